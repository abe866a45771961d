from django.contrib import admin

from alerts.models import Alert, AlertChange, Incident
from core.admin import ReadOnlyAdmin


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "tenant",
        "seen_in_sources",
        "severity",
        "status",
        "assigned_to",
        "updated_at_source",
    )
    list_filter = ("source", "severity", "status")
    search_fields = ("provider_id", "title", "tenant__tenant_id", "assigned_to")
    list_select_related = ("tenant",)
    date_hierarchy = "updated_at_source"
    readonly_fields = [f.name for f in Incident._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Seen in")
    def seen_in_sources(self, incident: Incident) -> str:
        return ", ".join(incident.seen_in_labels) or incident.get_source_display()


class AlertChangeInline(admin.TabularInline):
    model = AlertChange
    extra = 0
    can_delete = False
    readonly_fields = ("seen_at", "updated_at_source", "changes")
    fields = readonly_fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "tenant",
        "source",
        "severity",
        "status",
        "assigned_to",
        "updated_at_source",
        "duplicate_of",
    )
    list_filter = ("source", "severity", "status", "classification")
    search_fields = (
        "provider_id",
        "title",
        "entities_text",
        "tenant__tenant_id",
        "tenant__customer__name",
    )
    list_select_related = ("tenant",)
    date_hierarchy = "updated_at_source"
    # Synced from Microsoft: staff change alerts through triage, not here.
    readonly_fields = [f.name for f in Alert._meta.fields]
    inlines = [AlertChangeInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(AlertChange)
class AlertChangeAdmin(ReadOnlyAdmin):
    list_display = ("alert", "seen_at", "updated_at_source", "changes")
    search_fields = ("alert__provider_id",)
    list_select_related = ("alert",)
