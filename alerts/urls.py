from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("overview", views.overview, name="overview"),
    path("queue", views.queue_page, name="queue"),
    path("queue/export.csv", views.queue_export, name="queue_export"),
    path("alerts/<uuid:code>", views.alert_detail, name="alert_detail"),
    path("alerts/<uuid:code>/triage", views.alert_triage, name="alert_triage"),
    path("incidents", views.incident_list, name="incident_list"),
    path("incidents/<uuid:code>", views.incident_detail, name="incident_detail"),
]
