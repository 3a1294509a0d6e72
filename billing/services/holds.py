"""Holds and settlement: a job's worst-case price reserved on one wallet (`hold_take`), then closed —
settled (`hold_settle`: charge the usage, release the rest, credit the worker owner's reward) or
released in full (`hold_release`). Each is idempotent on the job id.

The hot statements are whole and named here: the hold's wallet update with its two inserts
(HOLD_TAKE_SQL), the hold read for settlement with its reward terms (HOLD_SETTLING_SQL) and its close
(HOLD_SETTLED_SQL). A chat request's job usually opens in one statement that writes the same rows
(inference.services.opening), with hold_terms' numbers.
"""

import datetime
import decimal
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import TokenType, TokenTypePreference, User
from billing.escrow import probation_end
from billing.models import USD, ZERO, Hold, LedgerEntry, Wallet
from billing.pricing import estimate_usd, usage_usd, usd_per_token, usd_to_tokens, worker_reward_share
from billing.services.ledger import entries_post_new, entry_post, wallet_lock
from sogni_platform.exceptions import ApiError, InsufficientBalance, ServiceUnavailable

logger = logging.getLogger(__name__)

# A Hold read by HOLD_SETTLING_SQL: its extra columns (wallet_user_id, usd_per_sogni, first_reward_at,
# reward_wallet_id, ...) are attributes the model does not declare.
SettlingHold = Any
Kind = LedgerEntry.Kind

NO_SOGNI_RATE = "Paying in SOGNI is not available right now (no SOGNI rate is set)."


class HoldNotFound(LookupError):
    pass


@dataclass(frozen=True)
class HoldTerms:
    """A hold not yet written: the wallet it goes on and what it reserves."""

    job_id: str
    token_type: str
    model_id: str
    amount: Decimal
    usd_estimate: Decimal
    usd_per_token: Decimal
    input_price_usd_per_m: Decimal
    output_price_usd_per_m: Decimal

    @property
    def key(self) -> str:
        """Its ledger entry's idempotency key."""
        return f"{Kind.HOLD}:{self.job_id}"


# PostgreSQL: if the account's wallet covers the amount, hold it (the update locks the row, checks and
# writes at once) and write the hold and its ledger entry; no row if the wallet is short or missing.
HOLD_TAKE_SQL = """
WITH w AS (
    UPDATE billing_wallet SET held = held + %(amount)s, updated_at = %(now)s
    WHERE user_id = %(user_id)s AND token_type = %(token_type)s AND balance - held >= %(amount)s
    RETURNING id, balance, held
), h AS (
    INSERT INTO billing_hold (job_id, wallet_id, model_id, status, amount, usd_estimate, input_price_usd_per_m,
                              output_price_usd_per_m, usd_per_token, charged, usd_charged, prompt_tokens,
                              completion_tokens, worker_owner_id, reward, created_at, closed_at)
    SELECT %(job_id)s, w.id, %(model_id)s, 'open', %(amount)s, %(usd_estimate)s, %(input_price_usd_per_m)s,
           %(output_price_usd_per_m)s, %(usd_per_token)s, 0, 0, 0, 0, NULL, 0, %(now)s, NULL
    FROM w
    RETURNING id
), e AS (
    INSERT INTO billing_ledgerentry (wallet_id, kind, amount, held_change, balance_after, held_after,
                                     idempotency_key, job_id, stripe_event_id, operator_id, memo, created_at)
    SELECT w.id, 'hold', 0, %(amount)s, w.balance, w.held, %(key)s, %(job_id)s, '', NULL, '', %(now)s
    FROM w
)
SELECT w.id, w.balance, w.held, (SELECT id FROM h) FROM w
"""

# A hold by job id with what its settlement needs: its wallet's account and token type, and for the
# worker's owner (NULL: none) the SOGNI wallet, the SOGNI rate in effect and the owner's first reward
# (escrow). Parameters: owner id, now, owner id, job id.
HOLD_SETTLING_SQL = """
SELECT h.*, w.user_id AS wallet_user_id, w.token_type AS wallet_token_type,
    (SELECT r.id FROM billing_wallet r WHERE r.user_id = %s AND r.token_type = 'sogni') AS reward_wallet_id,
    (SELECT s.usd_per_sogni FROM billing_sognirate s WHERE s.effective_from <= %s
     ORDER BY s.effective_from DESC, s.id DESC LIMIT 1) AS usd_per_sogni,
    (SELECT e.created_at FROM billing_ledgerentry e JOIN billing_wallet r ON r.id = e.wallet_id
     WHERE r.user_id = %s AND r.token_type = 'sogni' AND e.kind = 'reward' ORDER BY e.id LIMIT 1) AS first_reward_at
FROM billing_hold h JOIN billing_wallet w ON w.id = h.wallet_id
WHERE h.job_id = %s
"""
HOLD_SETTLING_LOCKED_SQL = HOLD_SETTLING_SQL + "FOR UPDATE OF h"  # PostgreSQL; SQLite serializes writes

# Parameters: status, closed at, charged, usd charged, reward, prompt tokens, completion tokens,
# worker owner id, hold id.
HOLD_SETTLED_SQL = (
    "UPDATE billing_hold SET status = %s, closed_at = %s, charged = %s, usd_charged = %s, reward = %s, "
    "prompt_tokens = %s, completion_tokens = %s, worker_owner_id = %s WHERE id = %s"
)


def _wallets_to_try(token_type: str) -> list[str]:
    """The wallets a hold for `token_type` may go on, in order: auto is Spark if it covers, else SOGNI."""
    if token_type not in TokenTypePreference.values:
        raise ApiError("token_type must be one of spark, sogni, auto.", param="token_type", code="invalid_token_type")
    return [TokenType.SPARK, TokenType.SOGNI] if token_type == TokenTypePreference.AUTO else [token_type]


def _terms(*, job_id: str, model, usd: Decimal, token_type: str, rate: Decimal) -> HoldTerms:
    return HoldTerms(
        job_id=job_id,
        token_type=token_type,
        model_id=model.pk,
        amount=usd_to_tokens(usd, token_type, rate=rate),
        usd_estimate=usd,
        usd_per_token=rate,
        input_price_usd_per_m=model.input_price_usd_per_m,
        output_price_usd_per_m=model.output_price_usd_per_m,
    )


def hold_terms(*, job_id: str, model, prompt_tokens: int, max_tokens: int, token_type: str) -> HoldTerms:
    """The hold hold_take tries first for `token_type` (Spark for auto), unwritten: for a statement that
    also does other work. A hold that does not go on that wallet is hold_take's to make."""
    wallet_type = _wallets_to_try(token_type)[0]
    try:
        rate = usd_per_token(wallet_type)
    except LookupError:
        raise ServiceUnavailable(NO_SOGNI_RATE) from None
    usd = estimate_usd(model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    return _terms(job_id=job_id, model=model, usd=usd, token_type=wallet_type, rate=rate)


def hold_take(
    *, user: User, job_id: str, model, prompt_tokens: int, max_tokens: int, token_type: str, new_job: bool = False
) -> Hold:
    """Reserve the worst-case price of a job (billing.pricing.estimate_usd) on one wallet.

    `token_type` is spark, sogni or auto (Spark if it covers the hold, else SOGNI). Raises
    sogni_platform.exceptions.InsufficientBalance (402) when no allowed wallet has enough available,
    ApiError (400, param token_type) for an unknown type. Idempotent on `job_id`: a second call
    returns the existing hold, whatever its state. `new_job`: the job was created in the caller's
    transaction, so it cannot have a hold yet (no lookup, no savepoint).
    """
    candidates = _wallets_to_try(token_type)
    existing = None if new_job else Hold.objects.select_related("wallet").filter(job_id=job_id).first()
    if existing is not None:
        return existing
    usd = estimate_usd(model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    if new_job:
        return _hold_first_covering(user_id=user.pk, job_id=job_id, model=model, usd=usd, candidates=candidates)
    try:
        with transaction.atomic():
            return _hold_first_covering(user_id=user.pk, job_id=job_id, model=model, usd=usd, candidates=candidates)
    except IntegrityError:
        existing = Hold.objects.select_related("wallet").filter(job_id=job_id).first()
        if existing is None:
            raise
        return existing


def _hold_first_covering(*, user_id: int, job_id: str, model, usd: Decimal, candidates: list[str]) -> Hold:
    shortfalls = []
    for token_type in candidates:
        try:
            rate = usd_per_token(token_type)
        except LookupError:
            if len(candidates) == 1:
                raise ServiceUnavailable(NO_SOGNI_RATE) from None
            continue
        terms = _terms(job_id=job_id, model=model, usd=usd, token_type=token_type, rate=rate)
        hold = _hold_in_one_statement(user_id=user_id, terms=terms)
        if hold is not None:
            return hold
        # Short, or no wallet yet (or SQLite): the wallet locked, then the same writes in turn.
        wallet = wallet_lock(user_id=user_id, token_type=token_type)
        if wallet.available < terms.amount:
            shortfalls.append(f"{terms.amount.normalize():f} {wallet.get_token_type_display()}")
            continue
        hold = Hold.objects.create(wallet=wallet, **_hold_fields(terms))
        entry_post(wallet, kind=Kind.HOLD, key=terms.key, held_change=terms.amount, job_id=job_id, new_key=True)
        return hold
    raise InsufficientBalance(
        f"Insufficient balance for this request: it needs up to {' or '.join(shortfalls)} available "
        "(prompt plus max_tokens). Top up, claim the daily bonus, or lower max_tokens."
    )


def _hold_fields(terms: HoldTerms) -> dict:
    return {
        "job_id": terms.job_id,
        "model_id": terms.model_id,
        "amount": terms.amount,
        "usd_estimate": terms.usd_estimate,
        "usd_per_token": terms.usd_per_token,
        "input_price_usd_per_m": terms.input_price_usd_per_m,
        "output_price_usd_per_m": terms.output_price_usd_per_m,
    }


def _hold_in_one_statement(*, user_id: int, terms: HoldTerms) -> Hold | None:
    """PostgreSQL: HOLD_TAKE_SQL, one round trip; None if the wallet is short or missing (or SQLite)."""
    if connection.vendor != "postgresql":
        return None
    now = timezone.now()
    params = {**_hold_fields(terms), "user_id": user_id, "token_type": terms.token_type, "key": terms.key, "now": now}
    with connection.cursor() as cursor:
        cursor.execute(HOLD_TAKE_SQL, params)
        row = cursor.fetchone()
    if row is None:
        return None
    wallet_id, balance, held, hold_id = row
    wallet = Wallet(pk=wallet_id, user_id=user_id, token_type=terms.token_type, balance=balance, held=held)
    return Hold(pk=hold_id, wallet=wallet, created_at=now, **_hold_fields(terms))


def hold_settle(*, job_id: str, prompt_tokens: int, completion_tokens: int, worker_owner_id: int | None = None) -> Hold:
    """Charge the actual usage in the hold's token type and release the rest.

    Usage is priced as the hold was: the model's prices and the token's USD rate when it was taken.

    The charge never exceeds the hold. If `worker_owner_id` is given, that user's SOGNI wallet earns a
    `reward`: settings.WORKER_REWARD_SHARE of the USD charged, at the current SOGNI rate; nothing when
    the owner is the paying account itself. Idempotent: a hold that is no longer open is returned
    unchanged. Raises HoldNotFound for an unknown job id.
    """
    # No savepoint inside a caller's transaction: any error here fails that transaction as a whole.
    with transaction.atomic(savepoint=False):
        hold = _hold_settling(job_id=job_id, worker_owner_id=worker_owner_id)
        if hold is not None and hold.status == Hold.Status.OPEN:
            _settle(
                hold, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, worker_owner_id=worker_owner_id
            )
    if hold is None:
        raise HoldNotFound(job_id)
    return hold


def _hold_settling(*, job_id: str, worker_owner_id: int | None) -> SettlingHold | None:
    """The hold, locked, with its wallet and its reward terms (HOLD_SETTLING_SQL)."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the backend stores it
    sql = HOLD_SETTLING_LOCKED_SQL if connection.features.has_select_for_update_of else HOLD_SETTLING_SQL
    hold: SettlingHold = next(iter(Hold.objects.raw(sql, [worker_owner_id, now, worker_owner_id, job_id])), None)
    if hold is None:
        return None
    hold.wallet = Wallet(pk=hold.wallet_id, user_id=hold.wallet_user_id, token_type=hold.wallet_token_type)
    # The extra columns come as the database gives them (SQLite: floats and text).
    if hold.usd_per_sogni is not None and not isinstance(hold.usd_per_sogni, Decimal):
        exact = decimal.Context(prec=15).create_decimal_from_float(float(hold.usd_per_sogni))
        hold.usd_per_sogni = exact.quantize(Decimal(1).scaleb(-USD["decimal_places"]))
    if isinstance(hold.first_reward_at, str):
        hold.first_reward_at = parse_datetime(hold.first_reward_at)
    if hold.first_reward_at is not None and timezone.is_naive(hold.first_reward_at):  # SQLite keeps UTC
        hold.first_reward_at = hold.first_reward_at.replace(tzinfo=datetime.UTC)
    return hold


def _settle(hold: SettlingHold, *, prompt_tokens: int, completion_tokens: int, worker_owner_id: int | None) -> None:
    """An open hold, locked: charge, release the rest, reward the worker's owner."""
    job_id = hold.job_id
    # Everything but the postings is worked out before the wallets are locked: a busy customer's
    # wallet is locked by every request they make, so it stays locked only for the writes.
    usd = usage_usd(model=hold, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    cost = usd_to_tokens(usd, hold.wallet.token_type, rate=hold.usd_per_token)
    charge = min(cost, hold.amount)
    usd_charged = usd if cost <= hold.amount else hold.usd_estimate
    # An owner serving their own account earns nothing: a reward paid from oneself is farming.
    earns = worker_owner_id is not None and worker_owner_id != hold.wallet.user_id
    reward, escrow = _reward_terms(hold, usd_charged=usd_charged) if earns else (ZERO, ZERO)
    hold.status, hold.closed_at = Hold.Status.SETTLED, timezone.now()
    hold.charged, hold.usd_charged, hold.reward = charge, usd_charged, reward
    hold.prompt_tokens, hold.completion_tokens, hold.worker_owner_id = prompt_tokens, completion_tokens, worker_owner_id
    closed_at = connection.ops.adapt_datetimefield_value(hold.closed_at)
    with connection.cursor() as cursor:
        cursor.execute(
            HOLD_SETTLED_SQL,
            [
                hold.status,
                closed_at,
                charge,
                usd_charged,
                reward,
                prompt_tokens,
                completion_tokens,
                worker_owner_id,
                hold.pk,
            ],
        )
    # The hold is locked and was open: none of its charge/release/reward keys is written yet.
    entries = []
    if charge > 0:
        entries.append(_entry(hold.wallet_id, Kind.CHARGE, job_id, amount=-charge, held_change=-charge))
    if hold.amount - charge > 0:
        entries.append(_entry(hold.wallet_id, Kind.RELEASE, job_id, held_change=charge - hold.amount))
    if reward:
        if hold.reward_wallet_id is None:  # an owner without a SOGNI wallet yet
            assert worker_owner_id is not None  # a reward has an owner
            wallet = Wallet.objects.get_or_create(user_id=worker_owner_id, token_type=TokenType.SOGNI)[0]
            hold.reward_wallet_id = wallet.pk
        memo = "In escrow until the probation period ends" if escrow else ""
        entries.append(_entry(hold.reward_wallet_id, Kind.REWARD, job_id, amount=reward, held_change=escrow, memo=memo))
    entries_post_new(entries)


def _entry(wallet_id: int, kind: str, job_id: str, *, amount=ZERO, held_change=ZERO, memo="") -> LedgerEntry:
    return LedgerEntry(
        wallet_id=wallet_id,
        kind=kind,
        idempotency_key=f"{kind}:{job_id}",
        job_id=job_id,
        amount=amount,
        held_change=held_change,
        memo=memo,
    )


def _reward_terms(hold: SettlingHold, *, usd_charged: Decimal) -> tuple[Decimal, Decimal]:
    """(reward, of which in escrow) for the worker's owner, from the terms read with the hold."""
    if usd_charged <= 0:
        return ZERO, ZERO
    if hold.usd_per_sogni is None:
        logger.warning("No SOGNI rate set: job %s settled without a worker reward.", hold.job_id)
        return ZERO, ZERO
    reward = usd_to_tokens(
        usd_charged * worker_reward_share(), TokenType.SOGNI, round_up=False, rate=hold.usd_per_sogni
    )
    if reward <= 0:
        return ZERO, ZERO
    # During the owner's probation the reward is credited and held in escrow (not yet available).
    return reward, reward if probation_end(hold.first_reward_at) > timezone.now() else ZERO


@transaction.atomic
def hold_release(*, job_id: str) -> Hold:
    """Release an open hold in full (the job ran no billable tokens). Idempotent; HoldNotFound if unknown."""
    hold = Hold.objects.select_for_update().filter(job_id=job_id).first()
    if hold is None:
        raise HoldNotFound(job_id)
    if hold.status != Hold.Status.OPEN:
        return hold
    wallet = Wallet.objects.select_for_update().get(pk=hold.wallet_id)
    if hold.amount > 0:
        entry_post(wallet, kind=Kind.RELEASE, key=f"release:{job_id}", held_change=-hold.amount, job_id=job_id)
    hold.status, hold.closed_at = Hold.Status.RELEASED, timezone.now()
    hold.save(update_fields=["status", "closed_at"])
    return hold
