"""System checks of the sync app, registered in ``SyncConfig.ready``."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error

from sync.runner import PAGING_STRATEGIES
from tenants.microsoft import sources


def check_every_source_has_a_paging_strategy(**kwargs: Any) -> list[Error]:
    """Every registered Microsoft source names a paging strategy the runner has;
    otherwise its sync would fail on its first run instead of at start-up."""
    return [
        Error(
            f"The Microsoft source {source.key!r} names the paging strategy "
            f"{source.paging!r}, which the sync runner does not have.",
            hint=f"Use one of {', '.join(sorted(PAGING_STRATEGIES))}, or add one to "
            "sync.runner.PAGING_STRATEGIES.",
            id="sync.E001",
        )
        for source in sources.SOURCES.values()
        if source.paging not in PAGING_STRATEGIES
    ]
