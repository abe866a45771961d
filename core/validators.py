"""The shapes of identifiers the portal accepts from people and from Microsoft.

Pure Python: the Microsoft client may import it (it imports nothing else of ours).
"""

import re

#: A GUID as Entra writes tenant and object ids (any case).
GUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
#: A DNS domain name such as contoso.onmicrosoft.com.
DOMAIN_PATTERN = re.compile(
    r"^(?=.{3,253}$)([a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$"
)


def is_guid(value: str) -> bool:
    return bool(GUID_PATTERN.match(value))


def is_domain(value: str) -> bool:
    return bool(DOMAIN_PATTERN.match(value))
