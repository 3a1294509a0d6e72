"""Every write to wallets, holds and the ledger. Ledger rows are written here and nowhere else.

Each balance change locks the wallet row (SELECT ... FOR UPDATE), appends one LedgerEntry with a
unique idempotency key and updates the wallet, in one transaction: the ledger of a wallet sums to
its balance (`amount`) and its held amount (`held_change`), and a key already written changes nothing.
"""

import datetime
import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import TokenType, TokenTypePreference, User
from billing.escrow import escrow_probation_ends
from billing.models import ZERO, AccountDebt, DailyBonusClaim, Hold, LedgerEntry, TopUp, Wallet
from billing.pricing import (
    SPARK_USD,
    estimate_usd,
    usage_usd,
    usd_per_token,
    usd_to_tokens,
    worker_reward_share,
)
from billing.selectors import next_daily_bonus_at
from sogni_platform.exceptions import ApiError, InsufficientBalance, ServiceUnavailable
from sogni_platform.inserts import insert

logger = logging.getLogger(__name__)
Kind = LedgerEntry.Kind


class DailyBonusAlreadyClaimed(Exception):
    def __init__(self, next_claim_at: datetime.datetime):
        super().__init__(
            f"The daily bonus was already claimed today; next claim at {next_claim_at:%Y-%m-%d %H:%M} UTC."
        )
        self.next_claim_at = next_claim_at


class HoldNotFound(LookupError):
    pass


class AdjustmentRejected(ValueError):
    pass


class TopUpUnknown(LookupError):
    pass


def wallets_ensure(*, user: User) -> dict[str, Wallet]:
    """Both wallets of `user`, created empty if missing (safe under concurrency)."""
    return {tt: Wallet.objects.get_or_create(user=user, token_type=tt)[0] for tt in TokenType.values}


def _wallet_lock(*, user_id: int, token_type: str) -> Wallet:
    wallet = Wallet.objects.select_for_update().filter(user_id=user_id, token_type=token_type).first()
    if wallet is not None:
        return wallet
    Wallet.objects.get_or_create(user_id=user_id, token_type=token_type)
    return Wallet.objects.select_for_update().get(user_id=user_id, token_type=token_type)


def _wallet_hold(*, user_id: int, token_type: str, amount: Decimal) -> Wallet | None:
    """Hold `amount` on the wallet if that much is available, in one statement that also locks it, or
    None (short, or no wallet yet). The wallet comes back as of before the hold: what `_post` (with
    save_wallet=False) needs to write the hold's entry, the row having the new amount already."""
    table = Wallet._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET held = held + %s, updated_at = %s "  # noqa: S608 - the name is from model meta
            "WHERE user_id = %s AND token_type = %s AND balance - held >= %s RETURNING id, balance, held",
            [amount, timezone.now(), user_id, token_type, amount],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    pk, balance, held = row
    return Wallet(pk=pk, user_id=user_id, token_type=token_type, balance=balance, held=held - amount)


def _post(
    wallet: Wallet,
    *,
    kind: str,
    key: str,
    amount: Decimal = ZERO,
    held_change: Decimal = ZERO,
    job_id: str = "",
    stripe_event_id: str = "",
    operator: User | None = None,
    memo: str = "",
    new_key: bool = False,
    save_wallet: bool = True,
) -> tuple[LedgerEntry, bool]:
    """Append one entry to a wallet locked by the caller; (entry, False) if `key` was already written.

    `new_key`: the caller's own lock proves the key unwritten (a hold's keys are only written while
    the locked hold row changes state), so the lookup is skipped; the unique index still guards it.
    `save_wallet=False`: the caller saves the wallet itself (it posts again at once, or its own statement
    already wrote the new amounts).
    """
    existing = None if new_key else LedgerEntry.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return existing, False
    balance, held = wallet.balance + amount, wallet.held + held_change
    if held < 0 or balance - held < 0:
        raise InsufficientBalance(
            f"Insufficient {wallet.get_token_type_display()} balance: available {wallet.available.normalize():f}."
        )
    wallet.balance, wallet.held, wallet.updated_at = balance, held, timezone.now()
    if save_wallet:
        wallet.save(update_fields=["balance", "held", "updated_at"])
    entry = insert(
        LedgerEntry(
            wallet=wallet,
            kind=kind,
            amount=amount,
            held_change=held_change,
            balance_after=balance,
            held_after=held,
            idempotency_key=key,
            job_id=job_id,
            stripe_event_id=stripe_event_id,
            operator=operator,
            memo=memo[:300],
        )
    )
    return entry, True


@transaction.atomic
def starter_grant_credit(*, user: User) -> LedgerEntry | None:
    """Creates the user's wallets and credits settings.STARTER_GRANT_SPARK once (idempotent per user)."""
    wallets_ensure(user=user)
    amount = Decimal(str(settings.STARTER_GRANT_SPARK))
    if amount <= 0:
        return None
    wallet = _wallet_lock(user_id=user.pk, token_type=TokenType.SPARK)
    entry, _ = _post(wallet, kind=Kind.STARTER_GRANT, key=f"starter_grant:{user.pk}", amount=amount, memo="Welcome")
    return entry


@transaction.atomic
def daily_bonus_claim(*, user: User, now: datetime.datetime | None = None) -> LedgerEntry:
    """Credits settings.DAILY_BONUS_SPARK once per UTC day; raises DailyBonusAlreadyClaimed otherwise.

    The unique (user, day) claim row is the guard: concurrent claims block on it and all but one fail.
    """
    now = now or timezone.now()
    day = now.astimezone(datetime.UTC).date()
    try:
        with transaction.atomic():
            DailyBonusClaim.objects.create(user=user, day=day, created_at=now)
    except IntegrityError:
        raise DailyBonusAlreadyClaimed(next_daily_bonus_at(now=now)) from None
    wallet = _wallet_lock(user_id=user.pk, token_type=TokenType.SPARK)
    amount = Decimal(str(settings.DAILY_BONUS_SPARK))
    entry, _ = _post(wallet, kind=Kind.DAILY_BONUS, key=f"daily_bonus:{user.pk}:{day.isoformat()}", amount=amount)
    return entry


def job_hold(
    *, user: User, job_id: str, model, prompt_tokens: int, max_tokens: int, token_type: str, new_job: bool = False
) -> Hold:
    """Reserve the worst-case price of a job (billing.pricing.estimate_usd) on one wallet.

    `token_type` is spark, sogni or auto (Spark if it covers the hold, else SOGNI). Raises
    sogni_platform.exceptions.InsufficientBalance (402) when no allowed wallet has enough available,
    ApiError (400, param token_type) for an unknown type. Idempotent on `job_id`: a second call
    returns the existing hold, whatever its state. `new_job`: the job was created in the caller's
    transaction, so it cannot have a hold yet (no lookup, no savepoint).
    """
    if token_type not in TokenTypePreference.values:
        raise ApiError("token_type must be one of spark, sogni, auto.", param="token_type", code="invalid_token_type")
    existing = None if new_job else Hold.objects.select_related("wallet").filter(job_id=job_id).first()
    if existing is not None:
        return existing
    usd = estimate_usd(model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    candidates = [TokenType.SPARK, TokenType.SOGNI] if token_type == TokenTypePreference.AUTO else [token_type]
    if new_job:
        return _hold_first_covering(user=user, job_id=job_id, model=model, usd=usd, candidates=candidates)
    try:
        with transaction.atomic():
            return _hold_first_covering(user=user, job_id=job_id, model=model, usd=usd, candidates=candidates)
    except IntegrityError:
        existing = Hold.objects.select_related("wallet").filter(job_id=job_id).first()
        if existing is None:
            raise
        return existing


def _hold_first_covering(*, user: User, job_id: str, model, usd: Decimal, candidates: list[str]) -> Hold:
    shortfalls = []
    for token_type in candidates:
        try:
            rate = usd_per_token(token_type)
        except LookupError:
            if len(candidates) == 1:
                raise ServiceUnavailable("Paying in SOGNI is not available right now (no SOGNI rate is set).") from None
            continue
        amount = usd_to_tokens(usd, token_type, rate=rate)
        wallet = _wallet_hold(user_id=user.pk, token_type=token_type, amount=amount)
        held_already = wallet is not None
        if not held_already:  # short, or no wallet yet: the message needs the amount available
            wallet = _wallet_lock(user_id=user.pk, token_type=token_type)
            if wallet.available < amount:
                shortfalls.append(f"{amount.normalize():f} {wallet.get_token_type_display()}")
                continue
        hold = insert(
            Hold(
                job_id=job_id,
                wallet=wallet,
                model_id=model.pk,
                amount=amount,
                usd_estimate=usd,
                input_price_usd_per_m=model.input_price_usd_per_m,
                output_price_usd_per_m=model.output_price_usd_per_m,
                usd_per_token=rate,
            )
        )
        _post(
            wallet,
            kind=Kind.HOLD,
            key=f"hold:{job_id}",
            held_change=amount,
            job_id=job_id,
            new_key=True,
            save_wallet=not held_already,
        )
        return hold
    raise InsufficientBalance(
        f"Insufficient balance for this request: it needs up to {' or '.join(shortfalls)} available "
        "(prompt plus max_tokens). Top up, claim the daily bonus, or lower max_tokens."
    )


def job_settle(*, job_id: str, prompt_tokens: int, completion_tokens: int, worker_owner: User | None = None) -> Hold:
    """Charge the actual usage in the hold's token type and release the rest.

    Usage is priced as the hold was: the model's prices and the token's USD rate when it was taken.

    The charge never exceeds the hold. If `worker_owner` is given, their SOGNI wallet earns a `reward`:
    settings.WORKER_REWARD_SHARE of the USD charged, at the current SOGNI rate. Idempotent: a hold
    that is no longer open is returned unchanged. Raises HoldNotFound for an unknown job id.
    """
    reward_wallet = None
    if worker_owner is not None:
        reward_wallet = Wallet.objects.get_or_create(user=worker_owner, token_type=TokenType.SOGNI)[0]
    # No savepoint inside a caller's transaction: any error here fails that transaction as a whole.
    with transaction.atomic(savepoint=False):
        hold = Hold.objects.select_for_update(of=("self",)).select_related("wallet").filter(job_id=job_id).first()
        if hold is not None and hold.status == Hold.Status.OPEN:
            _settle(hold, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                    worker_owner=worker_owner, reward_wallet=reward_wallet)  # fmt: skip
    if hold is None:
        raise HoldNotFound(job_id)
    return hold


def _settle(hold: Hold, *, prompt_tokens: int, completion_tokens: int, worker_owner, reward_wallet) -> None:
    """An open hold, locked: charge, release the rest, reward the worker's owner."""
    job_id = hold.job_id
    # Everything but the postings is worked out before the wallets are locked: a busy customer's
    # wallet is locked by every request they make, so it stays locked only for the writes.
    usd = usage_usd(model=hold, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    cost = usd_to_tokens(usd, hold.wallet.token_type, rate=hold.usd_per_token)
    charge = min(cost, hold.amount)
    usd_charged = usd if cost <= hold.amount else hold.usd_estimate
    reward, escrow = _reward_terms(reward_wallet, usd_charged=usd_charged, job_id=job_id)
    hold.status, hold.closed_at = Hold.Status.SETTLED, timezone.now()
    hold.charged, hold.usd_charged, hold.reward = charge, usd_charged, reward
    hold.prompt_tokens, hold.completion_tokens, hold.worker_owner = prompt_tokens, completion_tokens, worker_owner
    hold.save()
    wallet_ids = {hold.wallet_id} | ({reward_wallet.pk} if reward else set())
    # Lock every wallet touched in id order, so concurrent settlements cannot deadlock.
    locked = {w.pk: w for w in Wallet.objects.select_for_update().filter(pk__in=wallet_ids).order_by("pk")}
    wallet = hold.wallet = locked[hold.wallet_id]
    # The hold is locked and was open: none of its charge/release/reward keys is written yet.
    releases = hold.amount - charge > 0
    if charge > 0:
        _post(wallet, kind=Kind.CHARGE, key=f"charge:{job_id}", amount=-charge, held_change=-charge, job_id=job_id,
              new_key=True, save_wallet=not releases)  # fmt: skip
    if releases:
        _post(wallet, kind=Kind.RELEASE, key=f"release:{job_id}", held_change=charge - hold.amount, job_id=job_id,
              new_key=True)  # fmt: skip
    if reward:
        memo = "In escrow until the probation period ends" if escrow else ""
        _post(locked[reward_wallet.pk], kind=Kind.REWARD, key=f"reward:{job_id}", amount=reward,
              held_change=escrow, job_id=job_id, memo=memo, new_key=True)  # fmt: skip


def _reward_terms(wallet: Wallet | None, *, usd_charged: Decimal, job_id: str) -> tuple[Decimal, Decimal]:
    """(reward, of which in escrow) for the owner of `wallet` (their SOGNI wallet; None: no reward)."""
    if wallet is None or usd_charged <= 0:
        return ZERO, ZERO
    try:
        reward = usd_to_tokens(usd_charged * worker_reward_share(), TokenType.SOGNI, round_up=False)
    except LookupError:
        logger.warning("No SOGNI rate set: job %s settled without a worker reward.", job_id)
        return ZERO, ZERO
    if reward <= 0:
        return ZERO, ZERO
    # During the owner's probation the reward is credited and held in escrow (not yet available).
    return reward, reward if escrow_probation_ends(wallet=wallet) > timezone.now() else ZERO


@transaction.atomic
def job_release(*, job_id: str) -> Hold:
    """Release an open hold in full (the job ran no billable tokens). Idempotent; HoldNotFound if unknown."""
    hold = Hold.objects.select_for_update().filter(job_id=job_id).first()
    if hold is None:
        raise HoldNotFound(job_id)
    if hold.status != Hold.Status.OPEN:
        return hold
    wallet = Wallet.objects.select_for_update().get(pk=hold.wallet_id)
    if hold.amount > 0:
        _post(wallet, kind=Kind.RELEASE, key=f"release:{job_id}", held_change=-hold.amount, job_id=job_id)
    hold.status, hold.closed_at = Hold.Status.RELEASED, timezone.now()
    hold.save(update_fields=["status", "closed_at"])
    return hold


@transaction.atomic
def wallet_adjust(*, wallet: Wallet, amount: Decimal, reason: str, operator: User, key: str) -> LedgerEntry:
    """An operator's correction (signed amount) with its reason; idempotent on `key` (one form submission)."""
    if not reason.strip():
        raise AdjustmentRejected("A reason is required.")
    if amount == 0:
        raise AdjustmentRejected("The amount must not be zero.")
    wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
    if wallet.available + amount < 0:
        raise AdjustmentRejected(f"Only {wallet.available.normalize():f} is available to take away.")
    entry, _ = _post(
        wallet, kind=Kind.ADJUSTMENT, key=f"adjustment:{key}", amount=amount, operator=operator, memo=reason.strip()
    )
    return entry


@transaction.atomic
def user_default_token_type_set(*, user: User, token_type: str) -> User:
    if token_type not in TokenTypePreference.values:
        raise ValueError(f"unknown token type {token_type!r}")
    User.objects.filter(pk=user.pk).update(default_token_type=token_type)
    user.default_token_type = token_type
    return user


def topup_record(*, user: User, session_id: str, usd_cents: int) -> TopUp:
    """The pending top-up behind a Stripe Checkout Session this platform created."""
    return TopUp.objects.create(
        user=user, session_id=session_id, usd_cents=usd_cents, spark=Decimal(usd_cents) / 100 / SPARK_USD
    )


@transaction.atomic
def topup_credit(
    *, session_id: str, user_id: int, usd_cents: int, payment_intent: str, stripe_event_id: str
) -> LedgerEntry | None:
    """Credit the Spark bought in a paid Checkout Session, once per session, whichever event reports it.

    A session this platform did not record is credited to its metadata's user; TopUpUnknown if there is none.
    """
    topup = TopUp.objects.select_for_update().filter(session_id=session_id).first()
    if topup is None:
        if not User.objects.filter(pk=user_id).exists():
            raise TopUpUnknown(session_id)
        topup = TopUp(user_id=user_id, session_id=session_id, usd_cents=usd_cents)
    elif topup.status in (TopUp.Status.PAID, TopUp.Status.REFUNDED):
        return None
    topup.usd_cents = usd_cents
    topup.spark = Decimal(usd_cents) / 100 / SPARK_USD
    topup.payment_intent = payment_intent or topup.payment_intent
    topup.status, topup.updated_at = TopUp.Status.PAID, timezone.now()
    topup.save()
    wallet = _wallet_lock(user_id=topup.user_id, token_type=TokenType.SPARK)
    entry, _ = _post(
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


@transaction.atomic
def topup_refund(
    *, payment_intent: str, amount_refunded_cents: int, charge_id: str, stripe_event_id: str
) -> tuple[Decimal, AccountDebt | None] | None:
    """Take back the Spark of a refunded charge (`amount_refunded_cents` is the charge's running total).

    What the available balance cannot cover is recorded as an AccountDebt and the user's API key is
    suspended (reason chargeback_debt). Returns (debited, debt), or None for a charge that bought no Spark.
    """
    from accounts.services import api_key_disable

    topup = TopUp.objects.select_for_update().filter(payment_intent=payment_intent).first() if payment_intent else None
    if topup is None or topup.status not in (TopUp.Status.PAID, TopUp.Status.REFUNDED):
        return None
    refunded_total = min(topup.spark, Decimal(amount_refunded_cents) / 100 / SPARK_USD)
    owed = refunded_total - topup.spark_refunded
    if owed <= 0:
        return ZERO, None
    wallet = _wallet_lock(user_id=topup.user_id, token_type=TokenType.SPARK)
    debit = min(owed, wallet.available)
    if debit > 0:
        _post(
            wallet,
            kind=Kind.REFUND,
            key=f"refund:{charge_id}:{amount_refunded_cents}",
            amount=-debit,
            stripe_event_id=stripe_event_id,
            memo=f"Stripe refund of {charge_id}",
        )
    debt = None
    if owed > debit:
        debt = AccountDebt.objects.create(
            user_id=topup.user_id,
            amount=owed - debit,
            reason=f"Refund of {charge_id} exceeded the available balance",
            stripe_event_id=stripe_event_id,
        )
        user = User.objects.get(pk=topup.user_id)
        if hasattr(user, "api_key"):
            api_key_disable(api_key=user.api_key, actor=None, reason="chargeback_debt")
    topup.spark_refunded = refunded_total
    topup.status, topup.updated_at = TopUp.Status.REFUNDED, timezone.now()
    topup.save(update_fields=["spark_refunded", "status", "updated_at"])
    return debit, debt
