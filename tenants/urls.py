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
    path("overview", views.overview, name="overview"),
    path("queue", views.queue, name="queue"),
    path("queue/export.csv", views.queue_export, name="queue_export"),
    path("alerts/<uuid:code>", views.alert_detail, name="alert_detail"),
    path("alerts/<uuid:code>/triage", views.alert_triage, name="alert_triage"),
    path("incidents", views.incident_list, name="incident_list"),
    path("incidents/<uuid:code>", views.incident_detail, name="incident_detail"),
    path("health", views.tenant_health, name="tenant_health"),
    path("consent/callback", views.consent_callback, name="consent_callback"),
    path("consent/<uuid:link_code>", views.consent_status, name="consent_status"),
]
