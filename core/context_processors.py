from django.utils.functional import SimpleLazyObject

from core import selectors


def alarms(request) -> dict:
    """Problems that concern every tenant, shown on every staff page. Read only when a
    template shows them (base.html does): a partial that extends nothing, such as the
    queue's 15-second poll, makes no query for them."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"alarms": SimpleLazyObject(selectors.active_alarms)}
