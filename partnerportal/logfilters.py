"""Log filters: secrets never reach a log line."""

import logging
import re

# Query and form values that are secrets: the consent state (replayable until used),
# authorization codes, tokens and client secrets.
SECRET_PARAMETERS = re.compile(
    r"(?i)\b(state|code|session_state|client_secret|client_assertion|access_token|"
    r"refresh_token|id_token|code_verifier)=([^&\s\"']+)"
)
BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    text = SECRET_PARAMETERS.sub(lambda m: f"{m[1]}=[redacted]", text)
    return BEARER.sub(lambda m: f"{m[1]}[redacted]", text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message with secret parameters and bearer tokens masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
