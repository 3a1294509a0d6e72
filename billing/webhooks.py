"""POST /webhooks/stripe/: verify the signature over the raw body, store the event id once, dispatch by type."""

import json
import logging

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.models import StripeEvent
from billing.services import TopUpUnknown, topup_credit, topup_failed, topup_refund

logger = logging.getLogger(__name__)
TOLERANCE_SECONDS = 300


def _bad_request(message: str) -> JsonResponse:
    return JsonResponse(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_webhook"}},
        status=400,
    )


def _checkout_paid(obj: dict, event_id: str) -> str:
    user_id = (obj.get("metadata") or {}).get("user_id") or obj.get("client_reference_id")
    entry = topup_credit(
        session_id=obj["id"],
        user_id=int(user_id) if str(user_id or "").isdigit() else 0,
        usd_cents=int(obj.get("amount_total") or 0),
        payment_intent=obj.get("payment_intent") or "",
        stripe_event_id=event_id,
    )
    return f"credited {entry.amount:f} Spark" if entry else "already credited"


def on_checkout_completed(obj: dict, event_id: str) -> str:
    # Delayed payment methods complete unpaid; they are credited by async_payment_succeeded.
    if obj.get("payment_status") != "paid":
        return f"not paid yet ({obj.get('payment_status')})"
    return _checkout_paid(obj, event_id)


def on_async_payment_succeeded(obj: dict, event_id: str) -> str:
    return _checkout_paid(obj, event_id)


def on_async_payment_failed(obj: dict, event_id: str) -> str:
    topup = topup_failed(session_id=obj["id"])
    return "payment failed" if topup else "payment failed (unknown session)"


def on_charge_refunded(obj: dict, event_id: str) -> str:
    result = topup_refund(
        payment_intent=obj.get("payment_intent") or "",
        amount_refunded_cents=int(obj.get("amount_refunded") or 0),
        charge_id=obj["id"],
        stripe_event_id=event_id,
    )
    if result is None:
        return "refund of a charge that bought no Spark"
    debited, debt = result
    return f"debited {debited:f} Spark" + (f", debt {debt.amount:f} recorded, API key suspended" if debt else "")


HANDLERS = {
    "checkout.session.completed": on_checkout_completed,
    "checkout.session.async_payment_succeeded": on_async_payment_succeeded,
    "checkout.session.async_payment_failed": on_async_payment_failed,
    "charge.refunded": on_charge_refunded,
}


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    if not settings.STRIPE_WEBHOOK_SECRET:
        return _bad_request("Stripe webhooks are not configured on this server.")
    signature = request.headers.get("Stripe-Signature")
    if not signature:
        return _bad_request("Missing Stripe-Signature header.")
    try:
        stripe.Webhook.construct_event(
            request.body, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as error:
        return _bad_request(f"Invalid signature: {error.user_message or error}")
    except (ValueError, UnicodeDecodeError):
        return _bad_request("The body is not valid JSON.")
    payload = json.loads(request.body)
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("id"), str)
        or not isinstance(payload.get("type"), str)
    ):
        return _bad_request("Not a Stripe event.")
    event_id, event_type = payload["id"], payload["type"]
    handler = HANDLERS.get(event_type)
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if handler is not None and not isinstance(obj, dict):
        return _bad_request("The event has no data.object.")
    # The event row and its effects commit together: a failure leaves nothing, and Stripe retries.
    try:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    stored = StripeEvent.objects.create(
                        id=event_id, type=event_type, livemode=bool(payload.get("livemode")), payload=payload
                    )
            except IntegrityError:
                return JsonResponse({"received": True, "duplicate": True})
            try:
                stored.outcome = handler(obj, event_id) if handler else "ignored"
            except TopUpUnknown:
                stored.outcome = "unknown checkout session; nothing credited"
            stored.save(update_fields=["outcome"])
    except (KeyError, TypeError, ValueError) as error:
        return _bad_request(f"Malformed {event_type} event: {error!r}")
    logger.info("stripe event %s %s: %s", event_id, event_type, stored.outcome)
    return JsonResponse({"received": True, "outcome": stored.outcome})
