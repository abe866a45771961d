from django.contrib import admin
from django.urls import include, path

from core import views as core_views

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    # Before admin/: the admin signs in through the portal's own sign-in page.
    path("", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("", include("tenants.urls")),
    path("", include("alerts.urls")),
    path("", include("sync.urls")),
]
