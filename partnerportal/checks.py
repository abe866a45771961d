"""System checks of our own, run by `manage.py check` (and `--deploy`)."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def check_emulator_off_in_production(app_configs, **kwargs) -> list[Error]:
    """The emulator never stands in for Microsoft in a deployed portal."""
    if settings.MS_EMULATOR:
        return [
            Error(
                "MS_EMULATOR is on in a deployment.",
                hint="Unset MS_EMULATOR: production talks to Microsoft itself.",
                id="partnerportal.E001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_microsoft_urls_are_https(app_configs, **kwargs) -> list[Error]:
    """Bearer tokens travel only over verified TLS."""
    errors = []
    for name in ("MS_LOGIN_URL", "MS_DEFENDER_URL", "MS_GRAPH_URL", "PORTAL_BASE_URL"):
        if not getattr(settings, name).startswith("https://"):
            errors.append(
                Error(
                    f"{name} is not an https:// URL.",
                    hint="Set it to the https address of the service.",
                    id="partnerportal.E002",
                )
            )
    return errors
