from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import lockout, views

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            authentication_form=lockout.LockoutAuthenticationForm
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/microsoft/login", views.microsoft_login, name="microsoft_login"),
    path(
        "accounts/microsoft/callback",
        views.microsoft_callback,
        name="microsoft_callback",
    ),
    # The admin signs in through the portal's own sign-in (lockout, Microsoft).
    path("admin/login/", views.admin_login, name="admin_login"),
]
