"""Buy Spark through Stripe Checkout: the packages and the session we create for one."""

from dataclasses import dataclass
from decimal import Decimal

import stripe
from django.conf import settings

from accounts.models import User
from billing.pricing import SPARK_USD
from billing.services.topups import topup_record


@dataclass(frozen=True)
class Package:
    usd: int

    @property
    def cents(self) -> int:
        return self.usd * 100

    @property
    def spark(self) -> Decimal:
        return Decimal(self.usd) / SPARK_USD


PACKAGES = {p.usd: p for p in (Package(5), Package(10), Package(25))}


class CheckoutUnavailable(Exception):
    pass


def stripe_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def checkout_session_create(*, user: User, package: Package, success_url: str, cancel_url: str) -> str:
    """Create a Checkout Session for `package`, record the pending top-up; returns the URL to send the user to."""
    if not stripe_configured():
        raise CheckoutUnavailable("Top-ups are not configured on this server (no Stripe keys).")
    if settings.STRIPE_API_BASE:
        stripe.api_base = settings.STRIPE_API_BASE
    metadata = {"user_id": str(user.pk), "spark": f"{package.spark:f}"}
    try:
        session = stripe.checkout.Session.create(
            api_key=settings.STRIPE_SECRET_KEY,
            mode="payment",
            line_items=[
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": package.cents,
                        "product_data": {"name": f"{package.spark:,.0f} Spark"},
                    },
                }
            ],
            client_reference_id=str(user.pk),
            customer_email=user.email,
            metadata=metadata,
            payment_intent_data={"metadata": metadata},
            success_url=success_url,
            cancel_url=cancel_url,
        )
    except stripe.StripeError as error:
        raise CheckoutUnavailable(f"Stripe could not start the checkout: {error.user_message or error}") from error
    topup_record(user=user, session_id=session["id"], usd_cents=package.cents)
    return session["url"]
