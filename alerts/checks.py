"""System checks of the alerts app, registered in ``AlertsConfig.ready``."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error

from alerts import normalize
from tenants.microsoft import sources


def check_every_source_has_a_normaliser(**kwargs: Any) -> list[Error]:
    """Every registered Microsoft source names a payload shape ``alerts.normalize``
    knows; otherwise its pages could never be stored."""
    return [
        Error(
            f"The Microsoft source {source.key!r} names the payload shape "
            f"{source.payload!r}, which has no normaliser.",
            hint="Add one to alerts.normalize.NORMALISERS, or fix Source.payload in "
            "tenants/microsoft/sources.py.",
            id="alerts.E001",
        )
        for source in sources.SOURCES.values()
        if source.payload not in normalize.NORMALISERS
    ]
