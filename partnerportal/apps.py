from django.apps import AppConfig


class PartnerPortalConfig(AppConfig):
    name = "partnerportal"
    verbose_name = "Partner portal"

    def ready(self) -> None:
        from partnerportal import checks  # noqa: F401  (registers the system checks)
