from django.contrib import admin
from django.urls import include, path

from billing import urls as billing_urls
from billing.views import email_verify
from inference.usage import urls as usage_urls
from sogni_platform.health import healthz
from sogni_platform.metrics_views import metrics_view
from sogni_platform.openapi import OpenApiDocumentView

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("v1/openapi.json", OpenApiDocumentView.as_view(), name="openapi"),
    path("admin/", admin.site.urls),
    path("v1/account/", include(billing_urls.api_urlpatterns)),
    path("webhooks/stripe/", include(billing_urls.webhook_urlpatterns)),
    path("billing/", include("billing.urls")),
    path("v1/", include(usage_urls.api_urlpatterns)),
    path("v1/", include("inference.urls")),
    path("console/", include("console.urls")),
    path("", include("dashboard.urls")),
    # The emailed link verifies the address (accounts) and credits the starter grant (billing).
    path("verify-email/<str:token>/", email_verify, name="email_verify"),
    path("", include("accounts.urls")),
]

handler404 = "sogni_platform.middleware.page_not_found"
handler500 = "sogni_platform.middleware.server_error"
