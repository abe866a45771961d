from django.contrib import admin

from tenants.models import Customer, Tenant


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
