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
from billing.services.topups import TopUpUnknown, topup_credit, topup_dispute_lose, topup_failed, topup_refund

logger = logging.getLogger(__name__)
TOLERANCE_SECONDS = 300


def _bad_request(message: str) -> JsonResponse:
    return JsonResponse(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_webhook"}},
        status=400,
    )


# The outcome of a refund or dispute event whose charge has no credited top-up: stored, and applied
# when its checkout session completes (the events of one payment arrive in any order).
DEFERRED = "deferred: no credited top-up for this charge yet"


def _checkout_paid(obj: dict, event_id: str) -> str:
    user_id = (obj.get("metadata") or {}).get("user_id") or obj.get("client_reference_id")
    payment_intent = obj.get("payment_intent") or ""
    entry = topup_credit(
        session_id=obj["id"],
        user_id=int(str(user_id)) if str(user_id or "").isdigit() else 0,
        usd_cents=int(obj.get("amount_total") or 0),
        payment_intent=payment_intent,
        stripe_event_id=event_id,
    )
    if entry is None:
        return "already credited"
    return f"credited {entry.amount:f} Spark" + _deferred_apply(payment_intent)


def _deferred_apply(payment_intent: str) -> str:
    """Apply the deferred events of a payment just credited (its lock is held to the commit)."""
    if not payment_intent:
        return ""
    deferred = StripeEvent.objects.select_for_update().filter(
        outcome=DEFERRED, payload__data__object__payment_intent=payment_intent
    )
    applied = 0
    for stored in deferred.order_by("received_at", "id"):
        stored.outcome = HANDLERS[stored.type](stored.payload["data"]["object"], stored.id)
        stored.save(update_fields=["outcome"])
        applied += 1
    return f"; {applied} deferred event(s) applied" if applied else ""


def _taken_back(result: tuple | None) -> str:
    if result is None:
        return DEFERRED
    debited, debt = result
    return f"debited {debited:f} Spark" + (f", debt {debt.amount:f} recorded, API key suspended" if debt else "")


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
    return _taken_back(
        topup_refund(
            payment_intent=obj.get("payment_intent") or "",
            amount_refunded_cents=int(obj.get("amount_refunded") or 0),
            charge_id=obj["id"],
            stripe_event_id=event_id,
        )
    )


def on_dispute_created(obj: dict, event_id: str) -> str:
    # The Spark stays until the dispute is lost: most are won or withdrawn, and a loss the balance
    # cannot cover becomes a debt that suspends the key.
    return f"dispute opened ({obj.get('status')}); the Spark is taken back if it is lost"


def on_dispute_closed(obj: dict, event_id: str) -> str:
    if obj.get("status") != "lost":
        return f"dispute closed ({obj.get('status')}); nothing taken back"
    return _taken_back(
        topup_dispute_lose(
            payment_intent=obj.get("payment_intent") or "",
            dispute_id=obj["id"],
            amount_cents=int(obj["amount"]),
            charge_id=str(obj.get("charge") or ""),
            stripe_event_id=event_id,
        )
    )


HANDLERS = {
    "checkout.session.completed": on_checkout_completed,
    "checkout.session.async_payment_succeeded": on_async_payment_succeeded,
    "checkout.session.async_payment_failed": on_async_payment_failed,
    "charge.refunded": on_charge_refunded,
    "charge.dispute.created": on_dispute_created,
    "charge.dispute.closed": on_dispute_closed,
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
    if not isinstance(obj, dict):
        if handler is not None:
            return _bad_request("The event has no data.object.")
        obj = {}
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
