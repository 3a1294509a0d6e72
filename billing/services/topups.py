"""Top-ups bought through Stripe Checkout, and the Spark taken back when a payment is refunded or a
dispute is lost."""

from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import TokenType, User
from accounts.services import api_key_disable
from billing.models import ZERO, AccountDebt, LedgerEntry, TopUp
from billing.pricing import SPARK_USD
from billing.services.ledger import entry_post, wallet_lock

Kind = LedgerEntry.Kind


class TopUpUnknown(LookupError):
    pass


def topup_record(*, user: User, session_id: str, usd_cents: int) -> TopUp:
    """The pending top-up behind a Stripe Checkout Session this platform created."""
    return TopUp.objects.create(
        user=user, session_id=session_id, usd_cents=usd_cents, spark=Decimal(usd_cents) / 100 / SPARK_USD
    )


def _payment_lock(key: str) -> None:
    """Serialize the events of one Stripe payment (its checkout's credit, refunds, disputes) to the
    commit, across processes: an event that finds no credited top-up is deferred, and the credit that
    follows must see it. SQLite (embedded mode) serializes every write anyway."""
    if connection.vendor == "postgresql" and key:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"stripe_payment:{key}"])


@transaction.atomic
def topup_credit(
    *, session_id: str, user_id: int, usd_cents: int, payment_intent: str, stripe_event_id: str
) -> LedgerEntry | None:
    """Credit the Spark bought in a paid Checkout Session, once per session, whichever event reports it.

    A session this platform did not record is credited to its metadata's user; TopUpUnknown if there is none.
    Concurrent events for one session credit once: the second waits for the first and finds it paid.
    """
    _payment_lock(payment_intent or session_id)
    topup = TopUp.objects.select_for_update().filter(session_id=session_id).first()
    if topup is None:
        if not User.objects.filter(pk=user_id).exists():
            raise TopUpUnknown(session_id)
        # ON CONFLICT DO NOTHING: a concurrent event's insert wins, and this one then locks its row.
        TopUp.objects.bulk_create(
            [TopUp(user_id=user_id, session_id=session_id, usd_cents=usd_cents, spark=ZERO)], ignore_conflicts=True
        )
        topup = TopUp.objects.select_for_update().get(session_id=session_id)
    if topup.status in TopUp.CREDITED:
        return None
    topup.usd_cents = usd_cents
    topup.spark = Decimal(usd_cents) / 100 / SPARK_USD
    topup.payment_intent = payment_intent or topup.payment_intent
    topup.status, topup.updated_at = TopUp.Status.PAID, timezone.now()
    topup.save()
    wallet = wallet_lock(user_id=topup.user_id, token_type=TokenType.SPARK)
    entry, _ = entry_post(
        wallet,
        kind=Kind.TOPUP,
        key=f"topup:{session_id}",
        amount=topup.spark,
        stripe_event_id=stripe_event_id,
        memo=f"Stripe Checkout ${usd_cents / 100:.2f}",
    )
    return entry


@transaction.atomic
def topup_failed(*, session_id: str) -> TopUp | None:
    topup = TopUp.objects.select_for_update().filter(session_id=session_id).first()
    if topup is not None and topup.status == TopUp.Status.PENDING:
        topup.status, topup.updated_at = TopUp.Status.FAILED, timezone.now()
        topup.save(update_fields=["status", "updated_at"])
    return topup


def _topup_credited_locked(payment_intent: str) -> TopUp | None:
    """The credited top-up paid by `payment_intent`, locked with its payment; None if there is none yet."""
    _payment_lock(payment_intent)
    topup = TopUp.objects.select_for_update().filter(payment_intent=payment_intent).first() if payment_intent else None
    return topup if topup is not None and topup.status in TopUp.CREDITED else None


def _spark_take_back(
    topup: TopUp, *, owed: Decimal, kind: str, key: str, stripe_event_id: str, memo: str, debt_reason: str, **taken
) -> tuple[Decimal, AccountDebt | None]:
    """Debit `owed` Spark from the buyer of `topup` and record `taken` (fields) on it; what the available
    balance cannot cover is recorded as an AccountDebt and the user's API key is suspended (reason
    chargeback_debt)."""
    wallet = wallet_lock(user_id=topup.user_id, token_type=TokenType.SPARK)
    debit = min(owed, wallet.available)
    if debit > 0:
        entry_post(wallet, kind=kind, key=key, amount=-debit, stripe_event_id=stripe_event_id, memo=memo)
    debt = None
    if owed > debit:
        debt = AccountDebt.objects.create(
            user_id=topup.user_id, amount=owed - debit, reason=debt_reason, stripe_event_id=stripe_event_id
        )
        user = User.objects.get(pk=topup.user_id)
        if hasattr(user, "api_key"):
            api_key_disable(api_key=user.api_key, actor=None, reason="chargeback_debt")
    for name, value in taken.items():
        setattr(topup, name, value)
    topup.updated_at = timezone.now()
    topup.save(update_fields=[*taken, "updated_at"])
    return debit, debt


@transaction.atomic
def topup_refund(
    *, payment_intent: str, amount_refunded_cents: int, charge_id: str, stripe_event_id: str
) -> tuple[Decimal, AccountDebt | None] | None:
    """Take back the Spark of a refunded charge (`amount_refunded_cents` is the charge's running total),
    as _spark_take_back does. Returns (debited, debt), or None for a charge with no credited top-up
    (not one that bought Spark, or its checkout session has not completed yet)."""
    topup = _topup_credited_locked(payment_intent)
    if topup is None:
        return None
    refunded_total = min(topup.spark - topup.spark_disputed, Decimal(amount_refunded_cents) / 100 / SPARK_USD)
    owed = refunded_total - topup.spark_refunded
    if owed <= 0:
        return ZERO, None
    return _spark_take_back(
        topup,
        owed=owed,
        kind=Kind.REFUND,
        key=f"refund:{charge_id}:{amount_refunded_cents}",
        stripe_event_id=stripe_event_id,
        memo=f"Stripe refund of {charge_id}",
        debt_reason=f"Refund of {charge_id} exceeded the available balance",
        spark_refunded=refunded_total,
        status=TopUp.Status.REFUNDED,
    )


@transaction.atomic
def topup_dispute_lose(
    *, payment_intent: str, dispute_id: str, amount_cents: int, charge_id: str, stripe_event_id: str
) -> tuple[Decimal, AccountDebt | None] | None:
    """Take back the Spark of a charge whose dispute was lost, as a refund does (_spark_take_back), once
    per charge: what was already refunded is not taken twice. Returns (debited, debt), or None for a
    charge with no credited top-up (yet)."""
    topup = _topup_credited_locked(payment_intent)
    if topup is None:
        return None
    if topup.spark_disputed > 0:
        return ZERO, None
    owed = min(Decimal(amount_cents) / 100 / SPARK_USD, topup.spark - topup.spark_refunded)
    if owed <= 0:
        return ZERO, None
    return _spark_take_back(
        topup,
        owed=owed,
        kind=Kind.CHARGEBACK,
        key=f"chargeback:{dispute_id}",
        stripe_event_id=stripe_event_id,
        memo=f"Stripe dispute {dispute_id} lost ({charge_id})",
        debt_reason=f"Dispute {dispute_id} on {charge_id} exceeded the available balance",
        spark_disputed=owed,
        status=TopUp.Status.DISPUTED,
    )
