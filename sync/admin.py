from django.contrib import admin, messages

from core.admin import ReadOnlyAdmin
from sync import services
from sync.models import SyncRun, SyncState


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
            services.request_sync(actor=request.user, sync_state=state)
        self.message_user(
            request, f"Sync queued for {queryset.count()} source(s).", messages.SUCCESS
        )

    @admin.action(description="Force token refresh (drop cached tokens)")
    def refresh_tokens(self, request, queryset) -> None:
        tenants = {state.tenant for state in queryset.select_related("tenant")}
        for tenant in tenants:
            services.refresh_tenant_tokens(actor=request.user, tenant=tenant)
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
