from django.contrib import admin
from django.urls import include, path

from sogni_platform.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("v1/", include("inference.urls")),
    path("", include("accounts.urls")),
]
