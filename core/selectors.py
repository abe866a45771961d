"""Reads every page needs: the alarms that concern every tenant."""

from core import shared
from core.models import Alarm


def active_alarms() -> list[Alarm]:
    """Alarms not cleared yet. Every staff page shows them, so they are shared for
    a few seconds (core.shared), and forgotten (`forget_alarms`) when one is raised
    or cleared."""
    return shared.get_shared(
        "alarms", (), lambda: list(Alarm.objects.filter(cleared_at__isnull=True))
    )


def forget_alarms() -> None:
    shared.forget_shared("alarms", ())
