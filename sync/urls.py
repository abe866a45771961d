from django.urls import path

from sync import views

app_name = "sync"

urlpatterns = [
    path("health", views.tenant_health, name="tenant_health"),
]
