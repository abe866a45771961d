from django.contrib import admin, messages

from tenants import services, sync
from tenants.models import (
    Alarm,
    Alert,
    AlertChange,
    AuditEvent,
    Capability,
    ConsentLink,
    Customer,
    Incident,
    SyncRun,
    SyncState,
    Tenant,
)


class TenantInline(admin.TabularInline):
    model = Tenant
    extra = 0
    fields = ("tenant_id", "display_name", "state", "last_error", "verified_at")
    readonly_fields = ("verified_at",)
    show_change_link = True


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "contact_email", "expected_tenant", "created_at")
    search_fields = ("name", "contact_email", "expected_tenant", "tenants__tenant_id")
    filter_horizontal = ("staff", "staff_groups")
    readonly_fields = ("code", "created_at")
    inlines = [TenantInline]


class CapabilityInline(admin.TabularInline):
    model = Capability
    extra = 0
    can_delete = False
    readonly_fields = ("source", "status", "detail", "granted_roles", "checked_at")
    fields = readonly_fields


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("__str__", "tenant_id", "customer", "state", "region", "updated_at")
    list_filter = ("state", "region")
    search_fields = ("tenant_id", "display_name", "primary_domain", "customer__name")
    list_select_related = ("customer",)
    readonly_fields = (
        "code",
        "created_at",
        "updated_at",
        "consented_at",
        "verified_at",
    )
    inlines = [CapabilityInline]
    actions = ["reverify"]

    @admin.action(description="Check access again (re-verify)")
    def reverify(self, request, queryset) -> None:
        for tenant in queryset:
            services.request_reverification(actor=request.user, tenant=tenant)
        self.message_user(
            request,
            f"Re-verification queued for {queryset.count()} tenant(s).",
            messages.SUCCESS,
        )


@admin.register(ConsentLink)
class ConsentLinkAdmin(admin.ModelAdmin):
    list_display = (
        "customer",
        "created_at",
        "expires_at",
        "outcome",
        "used_at",
        "withdrawn_at",
        "pinned_tenant",
    )
    list_filter = ("outcome",)
    search_fields = ("customer__name", "pinned_tenant")
    # The state hash is of no use to a person and is never shown.
    exclude = ("state_hash",)
    readonly_fields = (
        "code",
        "customer",
        "created_by",
        "created_at",
        "used_at",
        "outcome",
        "outcome_detail",
        "tenant",
        "pinned_tenant",
    )
    actions = ["withdraw"]

    def has_add_permission(self, request) -> bool:
        return False  # links are made on the customer page, where the URL is shown once

    @admin.action(description="Withdraw the selected links")
    def withdraw(self, request, queryset) -> None:
        for link in queryset:
            services.withdraw_consent_link(actor=request.user, link=link)


@admin.register(Capability)
class CapabilityAdmin(admin.ModelAdmin):
    list_display = ("tenant", "source", "status", "checked_at")
    list_filter = ("source", "status")
    search_fields = ("tenant__tenant_id", "tenant__customer__name")
    list_select_related = ("tenant",)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "actor", "customer", "tenant", "detail")
    list_filter = ("action",)
    search_fields = ("action", "detail", "customer__name", "tenant__tenant_id")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Alarm)
class AlarmAdmin(admin.ModelAdmin):
    list_display = ("kind", "message", "raised_at", "cleared_at")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the system writes; people only read them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SyncState)
class SyncStateAdmin(admin.ModelAdmin):
    list_display = (
        "tenant",
        "source",
        "cursor",
        "last_success_at",
        "next_due_at",
        "throttled_until",
        "consecutive_failures",
        "last_error",
    )
    list_filter = ("source", "tenant__state")
    search_fields = ("tenant__tenant_id", "tenant__customer__name", "last_error")
    list_select_related = ("tenant", "tenant__customer")
    readonly_fields = (
        "tenant",
        "source",
        "cursor",
        "paging",
        "backfill_done",
        "lease_owner",
        "lease_until",
        "last_attempt_at",
        "last_success_at",
        "last_error",
        "last_error_at",
        "consecutive_failures",
    )
    actions = ["sync_now", "refresh_tokens"]

    def has_add_permission(self, request) -> bool:
        return False  # made when a tenant is verified

    @admin.action(description="Sync now")
    def sync_now(self, request, queryset) -> None:
        for state in queryset.select_related("tenant"):
            sync.request_sync(actor=request.user, sync_state=state)
        self.message_user(
            request, f"Sync queued for {queryset.count()} source(s).", messages.SUCCESS
        )

    @admin.action(description="Force token refresh (drop cached tokens)")
    def refresh_tokens(self, request, queryset) -> None:
        tenants = {state.tenant for state in queryset.select_related("tenant")}
        for tenant in tenants:
            sync.refresh_tenant_tokens(actor=request.user, tenant=tenant)
        self.message_user(
            request,
            f"Cached tokens dropped for {len(tenants)} tenant(s); the next call asks "
            "Microsoft for new ones.",
            messages.SUCCESS,
        )


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "sync",
        "started_at",
        "duration_seconds",
        "outcome",
        "pages",
        "fetched",
        "created",
        "updated",
        "error",
    )
    list_filter = ("outcome", "sync__source")
    search_fields = ("sync__tenant__tenant_id", "sync__tenant__customer__name", "error")
    list_select_related = ("sync", "sync__tenant")
    date_hierarchy = "started_at"


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "tenant",
        "source",
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
