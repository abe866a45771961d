from tenants import selectors


def alarms(request) -> dict:
    """Problems that concern every tenant, shown on every staff page."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"alarms": selectors.active_alarms()}
