from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    # The dashboard page is the dashboard app's; these are its API key dialog's endpoints.
    path("dashboard/api-key/reveal", views.api_key_reveal_view, name="api_key_reveal"),
    path("dashboard/api-key/regenerate", views.api_key_regenerate_view, name="api_key_regenerate"),
    path("dashboard/api-key/disable", views.api_key_disable_view, name="api_key_disable"),
    path("dashboard/api-key/enable", views.api_key_enable_view, name="api_key_enable"),
]
