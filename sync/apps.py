from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Sync"

    def ready(self) -> None:
        # Connects the receiver that gives a verified tenant's sources sync states.
        from sync import services  # noqa: F401
