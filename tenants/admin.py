from django.contrib import admin, messages

from tenants import services
from tenants.models import Capability, ConsentLink, Customer, Tenant


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
