from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts and incidents"

    def ready(self) -> None:
        from django.core import checks

        from alerts.checks import check_every_source_has_a_normaliser

        checks.register(check_every_source_has_a_normaliser)
