"""POST /webhooks/stripe/ with events signed by the stripe library's own scheme."""

import itertools
import json
import time
from decimal import Decimal

import pytest
import stripe
from django.conf import settings

from accounts.models import TokenType
from billing.models import AccountDebt, LedgerEntry, StripeEvent, TopUp, Wallet
from billing.services.adjustments import wallet_adjust
from billing.services.holds import hold_take
from billing.services.topups import topup_record

pytestmark = pytest.mark.django_db
URL = "/webhooks/stripe/"


def event(event_id: str, type_: str, obj: dict) -> str:
    return json.dumps({"id": event_id, "object": "event", "type": type_, "livemode": False, "data": {"object": obj}})


def session(session_id: str, user, *, cents: int = 1000, paid: bool = True, intent: str = "") -> dict:
    return {
        "id": session_id,
        "object": "checkout.session",
        "amount_total": cents,
        "currency": "usd",
        "payment_status": "paid" if paid else "unpaid",
        "payment_intent": intent or f"pi_{session_id}",
        "client_reference_id": str(user.pk),
        "metadata": {"user_id": str(user.pk)},
    }


def post(client, payload: str, *, secret: str | None = None, timestamp: int | None = None, header: bool = True):
    headers = {}
    if header:
        signature = stripe.WebhookSignature.generate_signature_header(
            payload, secret or settings.STRIPE_WEBHOOK_SECRET, timestamp=timestamp
        )
        headers["HTTP_STRIPE_SIGNATURE"] = signature
    return client.post(URL, data=payload, content_type="application/json", **headers)


def spark(user) -> Decimal:
    return Wallet.objects.get(user=user, token_type=TokenType.SPARK).balance


def test_paid_checkout_is_credited_once(client, make_user):
    user = make_user()
    topup_record(user=user, session_id="cs_1", usd_cents=1000)
    response = post(client, event("evt_1", "checkout.session.completed", session("cs_1", user)))
    assert response.status_code == 200
    assert spark(user) == Decimal("2100")  # 100 starter + $10 / $0.005
    assert TopUp.objects.get(session_id="cs_1").status == "paid"
    entry = LedgerEntry.objects.get(kind="topup")
    assert (entry.amount, entry.stripe_event_id) == (Decimal("2000"), "evt_1")


def test_same_event_three_times_interleaved_out_of_order_credits_once(client, make_user):
    ada, bob = make_user(), make_user()
    ada_done = event("evt_a", "checkout.session.completed", session("cs_a", ada, cents=500))
    ada_async = event("evt_a2", "checkout.session.async_payment_succeeded", session("cs_a", ada, cents=500))
    bob_done = event("evt_b", "checkout.session.completed", session("cs_b", bob, cents=2500))
    unknown = event("evt_u", "customer.created", {"id": "cus_1", "object": "customer"})
    for payload in [bob_done, ada_done, unknown, ada_async, ada_done, bob_done, ada_done, ada_async]:
        assert post(client, payload).status_code == 200
    assert spark(ada) == Decimal("1100")
    assert spark(bob) == Decimal("5100")
    assert LedgerEntry.objects.filter(kind="topup").count() == 2
    assert set(StripeEvent.objects.values_list("id", flat=True)) == {"evt_a", "evt_a2", "evt_b", "evt_u"}
    assert StripeEvent.objects.get(pk="evt_u").outcome == "ignored"


def test_delayed_payment_is_credited_when_it_succeeds_and_failure_is_recorded(client, make_user):
    user = make_user()
    topup_record(user=user, session_id="cs_slow", usd_cents=1000)
    topup_record(user=user, session_id="cs_bad", usd_cents=500)
    post(client, event("evt_s1", "checkout.session.completed", session("cs_slow", user, paid=False)))
    assert spark(user) == Decimal("100")
    post(client, event("evt_s2", "checkout.session.async_payment_succeeded", session("cs_slow", user)))
    assert spark(user) == Decimal("2100")
    post(client, event("evt_f1", "checkout.session.async_payment_failed", session("cs_bad", user, cents=500)))
    assert TopUp.objects.get(session_id="cs_bad").status == "failed"
    assert spark(user) == Decimal("2100")


@pytest.mark.parametrize("problem", ["bad signature", "missing header", "old timestamp", "malformed json"])
def test_unverifiable_or_malformed_requests_are_400_and_credit_nothing(client, make_user, problem):
    user = make_user()
    payload = event("evt_x", "checkout.session.completed", session("cs_x", user))
    if problem == "bad signature":
        response = post(client, payload, secret="whsec_not_ours")
    elif problem == "missing header":
        response = post(client, payload, header=False)
    elif problem == "old timestamp":
        response = post(client, payload, timestamp=int(time.time()) - 301)
    else:
        response = post(client, payload[:-7] + "garbage")
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert spark(user) == Decimal("100")
    assert not StripeEvent.objects.exists()
    assert not LedgerEntry.objects.filter(kind="topup").exists()


def test_refund_takes_back_what_was_bought_once(client, make_user):
    user = make_user()
    post(client, event("evt_p", "checkout.session.completed", session("cs_r", user, intent="pi_r")))
    charge = {"id": "ch_r", "object": "charge", "payment_intent": "pi_r", "amount": 1000, "amount_refunded": 1000}
    post(client, event("evt_r1", "charge.refunded", charge))
    post(client, event("evt_r2", "charge.refunded", charge))  # a second event for the same refund
    assert spark(user) == Decimal("100")
    assert LedgerEntry.objects.filter(kind="refund").count() == 1
    assert user.api_key.is_enabled
    assert not AccountDebt.objects.exists()


def test_refund_beyond_the_balance_records_debt_and_suspends_the_key(client, make_user, catalog):
    from inference.models import LlmModel

    user = make_user()
    post(client, event("evt_p", "checkout.session.completed", session("cs_d", user, intent="pi_d")))
    model = LlmModel.objects.get(pk="qwen3.5-35b-a3b-gguf-q4km")
    # Hold 1,800 Spark ($9) for a running job: only 300 Spark stays available.
    hold_take(user=user, job_id="j1", model=model, prompt_tokens=0, max_tokens=10_000_000, token_type="spark")
    charge = {"id": "ch_d", "object": "charge", "payment_intent": "pi_d", "amount": 1000, "amount_refunded": 1000}
    response = post(client, event("evt_r", "charge.refunded", charge))
    assert response.status_code == 200
    wallet = Wallet.objects.get(user=user, token_type=TokenType.SPARK)
    assert (wallet.balance, wallet.held, wallet.available) == (Decimal("1800"), Decimal("1800"), 0)
    debt = AccountDebt.objects.get(user=user)
    assert debt.amount == Decimal("1700")
    user.api_key.refresh_from_db()
    assert (user.api_key.is_enabled, user.api_key.disabled_reason) == (False, "chargeback_debt")


def test_session_without_a_known_user_is_acknowledged_and_credits_nothing(client, make_user):
    user = make_user()
    obj = session("cs_nobody", user)
    obj["metadata"], obj["client_reference_id"] = {}, None
    response = post(client, event("evt_n", "checkout.session.completed", obj))
    assert response.status_code == 200
    assert not LedgerEntry.objects.filter(kind="topup").exists()


def test_partial_refunds_take_back_only_the_newly_refunded_part(client, make_user):
    user = make_user()
    post(client, event("evt_p", "checkout.session.completed", session("cs_pr", user, intent="pi_pr")))
    assert spark(user) == Decimal("2100")
    charge = {"id": "ch_pr", "object": "charge", "payment_intent": "pi_pr", "amount": 1000}
    post(client, event("evt_r1", "charge.refunded", {**charge, "amount_refunded": 400}))
    assert spark(user) == Decimal("1300")
    post(client, event("evt_r2", "charge.refunded", {**charge, "amount_refunded": 1000}))
    assert spark(user) == Decimal("100")
    post(client, event("evt_r3", "charge.refunded", {**charge, "amount_refunded": 400}))  # late, older state
    assert spark(user) == Decimal("100")
    assert list(LedgerEntry.objects.filter(kind="refund").order_by("id").values_list("amount", flat=True)) == [
        Decimal("-800"),
        Decimal("-1200"),
    ]


def dispute(dispute_id: str, intent: str, *, cents: int = 1000, status: str = "needs_response") -> dict:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": cents,
        "charge": f"ch_{intent}",
        "payment_intent": intent,
        "status": status,
        "reason": "fraudulent",
    }


def test_a_lost_dispute_takes_the_spark_back_once_and_a_won_one_nothing(client, make_user, admin_client):
    loser, winner = make_user(), make_user()
    post(client, event("evt_p1", "checkout.session.completed", session("cs_l", loser, intent="pi_l")))
    post(client, event("evt_p2", "checkout.session.completed", session("cs_w", winner, intent="pi_w")))
    for payload in [
        event("evt_l1", "charge.dispute.created", dispute("dp_l", "pi_l")),
        event("evt_w1", "charge.dispute.created", dispute("dp_w", "pi_w")),
    ]:
        assert post(client, payload).status_code == 200
    # Opened: the Spark stays until the dispute is decided.
    assert (spark(loser), spark(winner)) == (Decimal("2100"), Decimal("2100"))
    lost = event("evt_l2", "charge.dispute.closed", dispute("dp_l", "pi_l", status="lost"))
    won = event("evt_w2", "charge.dispute.closed", dispute("dp_w", "pi_w", status="won"))
    lost_again = event("evt_l3", "charge.dispute.closed", dispute("dp_l", "pi_l", status="lost"))
    for payload in [lost, won, lost_again, lost]:
        assert post(client, payload).status_code == 200
    assert (spark(loser), spark(winner)) == (Decimal("100"), Decimal("2100"))
    entry = LedgerEntry.objects.get(kind="chargeback")
    assert (entry.amount, entry.wallet.user, entry.stripe_event_id) == (Decimal("-2000"), loser, "evt_l2")
    assert TopUp.objects.get(session_id="cs_l").status == "disputed"
    assert TopUp.objects.get(session_id="cs_w").status == "paid"
    assert loser.api_key.is_enabled and not AccountDebt.objects.exists()
    assert "Dispute lost" in admin_client.get("/admin/billing/topup/?status=disputed").content.decode()


def test_a_lost_dispute_beyond_the_balance_records_debt_and_suspends_the_key(client, make_user, catalog):
    from inference.models import LlmModel

    user = make_user()
    post(client, event("evt_p", "checkout.session.completed", session("cs_dd", user, intent="pi_dd")))
    model = LlmModel.objects.get(pk="qwen3.5-35b-a3b-gguf-q4km")
    # Hold 1,800 Spark for a running job and spend 200 of the rest: 100 Spark stays available.
    hold_take(user=user, job_id="j1", model=model, prompt_tokens=0, max_tokens=10_000_000, token_type="spark")
    wallet_adjust(wallet=Wallet.objects.get(user=user, token_type=TokenType.SPARK), amount=Decimal("-200"),
                  reason="spent", operator=user, key="spent")  # fmt: skip
    response = post(client, event("evt_d", "charge.dispute.closed", dispute("dp_dd", "pi_dd", status="lost")))
    assert response.status_code == 200
    wallet = Wallet.objects.get(user=user, token_type=TokenType.SPARK)
    assert (wallet.balance, wallet.held, wallet.available) == (Decimal("1800"), Decimal("1800"), 0)
    assert AccountDebt.objects.get(user=user).amount == Decimal("1900")
    user.api_key.refresh_from_db()
    assert (user.api_key.is_enabled, user.api_key.disabled_reason) == (False, "chargeback_debt")


ORDERS = list(itertools.permutations(["checkout", "refund", "dispute"]))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(order) for order in ORDERS])
def test_a_refund_and_a_lost_dispute_before_the_checkout_completes_apply_when_it_does(client, make_user, order):
    user = make_user()
    charge = {"id": "ch_pi_o", "object": "charge", "payment_intent": "pi_o", "amount": 1000, "amount_refunded": 400}
    events = {
        "checkout": event("evt_c", "checkout.session.completed", session("cs_o", user, intent="pi_o")),
        "refund": event("evt_r", "charge.refunded", charge),
        "dispute": event("evt_d", "charge.dispute.closed", dispute("dp_o", "pi_o", cents=600, status="lost")),
    }
    for name in order:
        assert post(client, events[name]).status_code == 200
    for name in reversed(order):  # Stripe's retries, replayed out of order
        assert post(client, events[name]).status_code == 200
    # 2,000 Spark bought; $4 refunded (800 Spark) and $6 lost in the dispute (1,200 Spark) are taken back.
    assert spark(user) == Decimal("100")
    amounts = {e.kind: e.amount for e in LedgerEntry.objects.filter(kind__in=["topup", "refund", "chargeback"])}
    assert amounts == {"topup": Decimal("2000"), "refund": Decimal("-800"), "chargeback": Decimal("-1200")}
    assert LedgerEntry.objects.filter(kind__in=["topup", "refund", "chargeback"]).count() == 3
    assert not StripeEvent.objects.filter(outcome__startswith="deferred").exists()


@pytest.mark.parametrize("recorded", [False, True], ids=["unrecorded", "recorded"])
def test_concurrent_events_for_one_session_all_answer_2xx_and_credit_once(transactional_db, make_user, recorded):
    from django.db import connection
    from django.test import Client

    from tests.billing.test_concurrency import race

    if connection.vendor != "postgresql":
        pytest.skip("concurrent webhooks are raced on PostgreSQL")
    user = make_user()
    if recorded:
        topup_record(user=user, session_id="cs_race", usd_cents=1000)
    charge = {"id": "ch_race", "object": "charge", "payment_intent": "pi_race", "amount": 1000, "amount_refunded": 400}
    payloads = [
        event("evt_c1", "checkout.session.completed", session("cs_race", user, intent="pi_race")),
        event("evt_c2", "checkout.session.async_payment_succeeded", session("cs_race", user, intent="pi_race")),
        event("evt_c3", "checkout.session.completed", session("cs_race", user, intent="pi_race")),
        event("evt_r1", "charge.refunded", charge),
    ]
    for _ in range(2):  # then every event again at once, as Stripe's retries would
        statuses = race(len(payloads), lambda i: post(Client(), payloads[i]).status_code)
        assert statuses == [200] * len(payloads), statuses
    assert spark(user) == Decimal("1300")
    assert LedgerEntry.objects.filter(kind="topup").count() == 1
    assert LedgerEntry.objects.filter(kind="refund").count() == 1
    assert TopUp.objects.get(session_id="cs_race").status == "refunded"
