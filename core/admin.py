from django.contrib import admin

from core.models import Alarm, AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the system writes; people only read them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "actor", "customer", "tenant", "detail")
    list_filter = ("action",)
    search_fields = ("action", "detail", "customer__name", "tenant__tenant_id")
    date_hierarchy = "created_at"


@admin.register(Alarm)
class AlarmAdmin(admin.ModelAdmin):
    list_display = ("kind", "message", "raised_at", "cleared_at")
