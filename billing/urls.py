from django.urls import path

from billing import apis, views, webhooks

app_name = "billing"

# Dashboard actions, under billing/.
urlpatterns = [
    path("daily-bonus/", views.daily_bonus, name="daily-bonus"),
    path("checkout/", views.checkout, name="checkout"),
    path("token-type/", views.token_type, name="token-type"),
]

# Under v1/account/ (API key auth).
api_urlpatterns = [path("balance", apis.AccountBalanceApi.as_view(), name="account-balance")]

# Under webhooks/stripe/.
webhook_urlpatterns = [path("", webhooks.stripe_webhook, name="stripe-webhook")]
