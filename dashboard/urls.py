from django.urls import path

from dashboard import views

app_name = "dashboard"

# Session login; the API key dialog's endpoints (dashboard/api-key/...) are accounts' and the wallet
# panel's actions (billing/...) billing's.
urlpatterns = [
    path("dashboard/", views.index, name="index"),
    path("dashboard/verify-email/resend", views.email_verification_resend, name="email_verification_resend"),
    path("usage/", views.usage, name="usage"),
    path("usage/export.csv", views.usage_export, name="usage-export"),
    path("workers/", views.workers, name="workers"),
]
