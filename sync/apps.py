from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Sync"

    def ready(self) -> None:
        # Connects the receiver that gives a verified tenant's sources sync states.
        from django.core import checks

        from sync import services  # noqa: F401
        from sync.checks import check_every_source_has_a_paging_strategy

        checks.register(check_every_source_has_a_paging_strategy)
