from django.urls import path

from tenants import views

app_name = "tenants"

urlpatterns = [
    path("", views.customer_list, name="customer_list"),
    path("customers/new", views.customer_add, name="customer_add"),
    path("customers/<uuid:code>/", views.customer_detail, name="customer_detail"),
    path(
        "customers/<uuid:code>/consent-links",
        views.consent_link_create,
        name="consent_link_create",
    ),
    path(
        "customers/<uuid:code>/consent-links/<uuid:link_code>/withdraw",
        views.consent_link_withdraw,
        name="consent_link_withdraw",
    ),
    path("tenants/<uuid:code>/reverify", views.tenant_reverify, name="tenant_reverify"),
    path("consent/callback", views.consent_callback, name="consent_callback"),
    path("consent/<uuid:link_code>", views.consent_status, name="consent_status"),
]
