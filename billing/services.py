"""Every write to wallets, holds and the ledger. Ledger rows are written here and nowhere else.

Each balance change locks the wallet row (SELECT ... FOR UPDATE), appends one LedgerEntry with a
unique idempotency key and updates the wallet, in one transaction: the ledger of a wallet sums to
its balance (`amount`) and its held amount (`held_change`), and a key already written changes nothing.
"""

import datetime
import functools
import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import DateTimeField, IntegerField, Subquery
from django.utils import timezone

from accounts.models import TokenType, TokenTypePreference, User
from billing.escrow import probation_end
from billing.models import ZERO, AccountDebt, DailyBonusClaim, Hold, LedgerEntry, SogniRate, TopUp, Wallet
from billing.pricing import (
    QUANTUM,
    SPARK_USD,
    estimate_usd,
    usage_usd,
    usd_per_token,
    usd_to_tokens,
    worker_reward_share,
)
from billing.selectors import next_daily_bonus_at
from sogni_platform.exceptions import ApiError, InsufficientBalance, ServiceUnavailable
from sogni_platform.prepared import PreparedGet, typed
from sogni_platform.rows import insert, insert_many, insert_select, update

logger = logging.getLogger(__name__)
Kind = LedgerEntry.Kind


class DailyBonusAlreadyClaimed(Exception):
    def __init__(self, next_claim_at: datetime.datetime):
        super().__init__(
            f"The daily bonus was already claimed today; next claim at {next_claim_at:%Y-%m-%d %H:%M} UTC."
        )
        self.next_claim_at = next_claim_at


class DailyBonusUnverified(Exception):
    def __init__(self):
        super().__init__("Verify your email address first: the daily bonus goes to verified accounts.")


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


def _hold_written(*, user_id: int, token_type: str, hold: Hold, entry: LedgerEntry) -> bool:
    """If the wallet has `hold.amount` available: hold it, and write `hold` and its ledger `entry`; False
    (nothing written) if it is short or does not exist yet. On PostgreSQL one statement: the wallet's
    update (which locks it, checks and writes at once) and the two inserts, so the wallet stays locked
    only for the commit that follows, and the opening makes one round trip instead of three."""
    if connection.vendor != "postgresql":  # no data-modifying WITH (SQLite): the same writes in turn
        update, params = _hold_update(user_id=user_id, token_type=token_type, amount=hold.amount)
        with connection.cursor() as cursor:
            cursor.execute(update, params)
            row = cursor.fetchone()
        if row is None:
            return False
        hold.wallet = Wallet(pk=row[0], user_id=user_id, token_type=token_type, balance=_amount(row[1]),
                             held=_amount(row[2]) - hold.amount)  # fmt: skip
        insert(hold)
        _post(hold.wallet, kind=entry.kind, key=entry.idempotency_key, held_change=hold.amount, job_id=entry.job_id,
              new_key=True, save_wallet=False)  # fmt: skip
        return True
    ctes, params = hold_ctes(user_id=user_id, token_type=token_type, hold=hold, entry=entry)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {ctes} SELECT {HOLD_WRITTEN} FROM e", params)  # noqa: S608 - built from model meta
        row = cursor.fetchone()
    if row is None:
        return False
    hold_rows_written(user_id=user_id, token_type=token_type, hold=hold, entry=entry, row=row)
    return True


# The wallet a hold goes on, if it covers the amount. Parameters: user id, token type, amount.
_COVERS = "user_id = %s AND token_type = %s AND balance - held >= %s"


def _hold_update(*, user_id: int, token_type: str, amount: Decimal, condition: str = "") -> tuple[str, list]:
    now = connection.ops.adapt_datetimefield_value(timezone.now())  # raw SQL: as the ORM stores it
    update = (
        f"UPDATE {Wallet._meta.db_table} SET held = held + %s, updated_at = %s "  # noqa: S608 - the name is from model meta
        f"WHERE {_COVERS}{condition} RETURNING id, balance, held"
    )
    return update, [amount, now, user_id, token_type, amount]


def hold_covered(*, user_id: int, token_type: str, hold: Hold) -> tuple[str, list]:
    """SQL (` AND EXISTS …`) and parameters: true while the wallet could take `hold` as hold_ctes would
    write it. Reads without a lock: the hold's own update checks again."""
    return (
        f" AND EXISTS (SELECT 1 FROM {Wallet._meta.db_table} WHERE {_COVERS})",  # noqa: S608 - the name is from model meta
        [user_id, token_type, hold.amount],
    )


# What a statement with hold_ctes selects for hold_rows_written.
HOLD_WRITTEN = "e.wallet_id, e.balance_after, e.held_after, e.id, (SELECT id FROM h)"


def hold_ctes(
    *, user_id: int, token_type: str, hold: Hold, entry: LedgerEntry, condition: str = ""
) -> tuple[str, list]:
    """A hold as common table expressions for one PostgreSQL statement: `w`, the wallet's update (locks it,
    checks and writes at once; `condition`, SQL appended to its WHERE), then `h` and `e`, the hold and
    its ledger entry, written only if the wallet was. Select HOLD_WRITTEN FROM e for hold_rows_written."""
    update, params = _hold_update(user_id=user_id, token_type=token_type, amount=hold.amount, condition=condition)
    hold_sql, hold_params = insert_select(hold, source="w", columns={"wallet_id": "w.id"})
    entry_sql, entry_params = insert_select(
        entry, source="w", columns={"wallet_id": "w.id", "balance_after": "w.balance", "held_after": "w.held"}
    )
    ctes = (
        f"w AS ({update}), h AS ({hold_sql} RETURNING id), "
        f"e AS ({entry_sql} RETURNING wallet_id, balance_after, held_after, id)"
    )
    return ctes, [*params, *hold_params, *entry_params]


def hold_rows_written(*, user_id: int, token_type: str, hold: Hold, entry: LedgerEntry, row) -> None:
    """`hold` and `entry` as the statement with hold_ctes wrote them (`row`: its HOLD_WRITTEN)."""
    wallet_id, balance, held, entry.pk, hold.pk = row
    hold.wallet = Wallet(pk=wallet_id, user_id=user_id, token_type=token_type, balance=balance, held=held)
    entry.wallet_id, entry.balance_after, entry.held_after = wallet_id, balance, held
    for obj in (hold, entry):
        obj._state.adding, obj._state.db = False, connection.alias


def _amount(value) -> Decimal:
    """An amount a raw statement read: PostgreSQL gives a Decimal; SQLite (embedded mode) an int or a
    float, whose noise the ledger's 9 places drop."""
    return value if isinstance(value, Decimal) else Decimal(str(value)).quantize(QUANTUM)


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
    """Credits settings.DAILY_BONUS_SPARK once per UTC day to a verified account; raises
    DailyBonusUnverified or DailyBonusAlreadyClaimed otherwise.

    The unique (user, day) claim row is the guard: concurrent claims block on it and all but one fail.
    """
    if user.email_verified_at is None:
        raise DailyBonusUnverified
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
    _token_type_check(token_type)
    existing = None if new_job else Hold.objects.select_related("wallet").filter(job_id=job_id).first()
    if existing is not None:
        return existing
    usd = estimate_usd(model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    candidates = _wallets_to_try(token_type)
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


NO_SOGNI_RATE = "Paying in SOGNI is not available right now (no SOGNI rate is set)."


def _wallets_to_try(token_type: str) -> list[str]:
    """The wallets a hold for `token_type` may go on, in order: auto is Spark if it covers, else SOGNI."""
    return [TokenType.SPARK, TokenType.SOGNI] if token_type == TokenTypePreference.AUTO else [token_type]


def _token_type_check(token_type: str) -> None:
    if token_type not in TokenTypePreference.values:
        raise ApiError("token_type must be one of spark, sogni, auto.", param="token_type", code="invalid_token_type")


def _hold_rows(*, job_id: str, model, usd: Decimal, token_type: str, rate: Decimal) -> tuple[Hold, LedgerEntry]:
    amount = usd_to_tokens(usd, token_type, rate=rate)
    hold = Hold(job_id=job_id, model_id=model.pk, amount=amount, usd_estimate=usd, usd_per_token=rate,
                input_price_usd_per_m=model.input_price_usd_per_m,
                output_price_usd_per_m=model.output_price_usd_per_m)  # fmt: skip
    return hold, _entry(None, Kind.HOLD, job_id, held_change=amount)


def job_hold_first_choice(
    *, job_id: str, model, prompt_tokens: int, max_tokens: int, token_type: str
) -> tuple[str, Hold, LedgerEntry]:
    """The wallet job_hold tries first for `token_type` (Spark for auto) and the hold and ledger entry it
    would write there, unwritten: for a statement that also does other work (hold_ctes). A hold that
    does not go in there is job_hold's to make."""
    _token_type_check(token_type)
    wallet_type = _wallets_to_try(token_type)[0]
    try:
        rate = usd_per_token(wallet_type)
    except LookupError:
        raise ServiceUnavailable(NO_SOGNI_RATE) from None
    usd = estimate_usd(model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    return wallet_type, *_hold_rows(job_id=job_id, model=model, usd=usd, token_type=wallet_type, rate=rate)


def _hold_first_covering(*, user: User, job_id: str, model, usd: Decimal, candidates: list[str]) -> Hold:
    shortfalls = []
    for token_type in candidates:
        try:
            rate = usd_per_token(token_type)
        except LookupError:
            if len(candidates) == 1:
                raise ServiceUnavailable(NO_SOGNI_RATE) from None
            continue
        hold, entry = _hold_rows(job_id=job_id, model=model, usd=usd, token_type=token_type, rate=rate)
        amount = hold.amount
        if _hold_written(user_id=user.pk, token_type=token_type, hold=hold, entry=entry):
            return hold
        # Short, or no wallet yet: the message needs the amount available.
        wallet = _wallet_lock(user_id=user.pk, token_type=token_type)
        if wallet.available < amount:
            shortfalls.append(f"{amount.normalize():f} {wallet.get_token_type_display()}")
            continue
        hold.wallet = wallet
        insert(hold)
        _post(wallet, kind=Kind.HOLD, key=entry.idempotency_key, held_change=amount, job_id=job_id, new_key=True)
        return hold
    raise InsufficientBalance(
        f"Insufficient balance for this request: it needs up to {' or '.join(shortfalls)} available "
        "(prompt plus max_tokens). Top up, claim the daily bonus, or lower max_tokens."
    )


def _holds_locked():
    return Hold.objects.select_for_update(of=("self",)).select_related("wallet")


_HOLD = PreparedGet(lambda job_id: _holds_locked().filter(job_id=job_id))

# The hold with what its worker's reward needs: the owner's SOGNI wallet, the SOGNI rate in effect,
# and the owner's first reward (escrow), in the one statement.
_HOLD_AND_REWARD_TERMS = PreparedGet(
    lambda job_id, owner_id, now: (
        _holds_locked()
        .filter(job_id=job_id)
        .annotate(
            reward_wallet_id=Subquery(
                Wallet.objects.filter(user_id=typed(owner_id, IntegerField()), token_type=TokenType.SOGNI).values("id")[
                    :1
                ]
            ),
            usd_per_sogni=Subquery(
                SogniRate.objects.filter(effective_from__lte=typed(now, DateTimeField()))
                .order_by("-effective_from", "-id")
                .values("usd_per_sogni")[:1]
            ),
            first_reward_at=Subquery(
                LedgerEntry.objects.filter(
                    wallet__user_id=typed(owner_id, IntegerField()),
                    wallet__token_type=TokenType.SOGNI,
                    kind=Kind.REWARD,
                )
                .order_by("id")
                .values("created_at")[:1]
            ),
        )
    ),
    arity=3,
)


def job_settle(*, job_id: str, prompt_tokens: int, completion_tokens: int, worker_owner_id: int | None = None) -> Hold:
    """Charge the actual usage in the hold's token type and release the rest.

    Usage is priced as the hold was: the model's prices and the token's USD rate when it was taken.

    The charge never exceeds the hold. If `worker_owner_id` is given, that user's SOGNI wallet earns a
    `reward`: settings.WORKER_REWARD_SHARE of the USD charged, at the current SOGNI rate; nothing when
    the owner is the paying account itself. Idempotent: a
    hold that is no longer open is returned unchanged. Raises HoldNotFound for an unknown job id.
    """
    # No savepoint inside a caller's transaction: any error here fails that transaction as a whole.
    with transaction.atomic(savepoint=False):
        if worker_owner_id is None:
            hold = _HOLD.get(job_id)
        else:
            now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the backend stores it
            hold = _HOLD_AND_REWARD_TERMS.get(job_id, str(worker_owner_id), now)
        if hold is not None and hold.status == Hold.Status.OPEN:
            _settle(hold, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                    worker_owner_id=worker_owner_id)  # fmt: skip
    if hold is None:
        raise HoldNotFound(job_id)
    return hold


def _settle(hold: Hold, *, prompt_tokens: int, completion_tokens: int, worker_owner_id: int | None) -> None:
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
    update(hold, ["status", "closed_at", "charged", "usd_charged", "reward", "prompt_tokens", "completion_tokens",
                  "worker_owner"])  # fmt: skip
    # The hold is locked and was open: none of its charge/release/reward keys is written yet.
    entries = []
    if charge > 0:
        entries.append(_entry(hold.wallet_id, Kind.CHARGE, job_id, amount=-charge, held_change=-charge))
    if hold.amount - charge > 0:
        entries.append(_entry(hold.wallet_id, Kind.RELEASE, job_id, held_change=charge - hold.amount))
    if reward:
        if hold.reward_wallet_id is None:  # an owner without a SOGNI wallet yet
            wallet = Wallet.objects.get_or_create(user_id=worker_owner_id, token_type=TokenType.SOGNI)[0]
            hold.reward_wallet_id = wallet.pk
        memo = "In escrow until the probation period ends" if escrow else ""
        entries.append(_entry(hold.reward_wallet_id, Kind.REWARD, job_id, amount=reward, held_change=escrow, memo=memo))
    _post_new(entries)


def _entry(wallet_id: int | None, kind: str, job_id: str, *, amount=ZERO, held_change=ZERO, memo="") -> LedgerEntry:
    return LedgerEntry(wallet_id=wallet_id, kind=kind, idempotency_key=f"{kind}:{job_id}", job_id=job_id,
                       amount=amount, held_change=held_change, memo=memo)  # fmt: skip


def _reward_terms(hold: Hold, *, usd_charged: Decimal) -> tuple[Decimal, Decimal]:
    """(reward, of which in escrow) for the worker's owner, from the terms read with the hold."""
    if usd_charged <= 0:
        return ZERO, ZERO
    if hold.usd_per_sogni is None:
        logger.warning("No SOGNI rate set: job %s settled without a worker reward.", hold.job_id)
        return ZERO, ZERO
    reward = usd_to_tokens(usd_charged * worker_reward_share(), TokenType.SOGNI, round_up=False,
                           rate=hold.usd_per_sogni)  # fmt: skip
    if reward <= 0:
        return ZERO, ZERO
    # During the owner's probation the reward is credited and held in escrow (not yet available).
    return reward, reward if probation_end(hold.first_reward_at) > timezone.now() else ZERO


@functools.cache
def _wallet_change_sql() -> str:
    return (
        f"UPDATE {Wallet._meta.db_table} SET balance = balance + %s, held = held + %s, updated_at = %s "  # noqa: S608 - the name is from model meta
        "WHERE id = %s RETURNING balance, held"
    )


def _post_new(entries: list[LedgerEntry]) -> None:
    """Append entries whose keys the caller's own locks prove unwritten (the unique index still guards
    them): each wallet changes in one UPDATE, which locks it, in wallet id order as every other lock of
    several wallets; the entries' amounts after follow from the new amounts; then one INSERT for all."""
    by_wallet: dict[int, list[LedgerEntry]] = {}
    for entry in entries:
        by_wallet.setdefault(entry.wallet_id, []).append(entry)
    now = connection.ops.adapt_datetimefield_value(timezone.now())  # raw SQL: as the ORM stores it
    with connection.cursor() as cursor:
        for wallet_id in sorted(by_wallet):
            group = by_wallet[wallet_id]
            amount, held_change = sum(e.amount for e in group), sum(e.held_change for e in group)
            cursor.execute(_wallet_change_sql(), [amount, held_change, now, wallet_id])
            balance, held = cursor.fetchone()
            balance, held = _amount(balance) - amount, _amount(held) - held_change  # as the first entry found it
            for entry in group:
                balance, held = balance + entry.amount, held + entry.held_change
                if held < 0 or balance - held < 0:
                    raise InsufficientBalance(f"Insufficient balance in wallet {wallet_id}: {entry.idempotency_key}.")
                entry.balance_after, entry.held_after = balance, held
    insert_many(entries)


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
        TopUp.objects.bulk_create([TopUp(user_id=user_id, session_id=session_id, usd_cents=usd_cents, spark=ZERO)],
                                  ignore_conflicts=True)  # fmt: skip
        topup = TopUp.objects.select_for_update().get(session_id=session_id)
    if topup.status in TopUp.CREDITED:
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
    from accounts.services import api_key_disable

    wallet = _wallet_lock(user_id=topup.user_id, token_type=TokenType.SPARK)
    debit = min(owed, wallet.available)
    if debit > 0:
        _post(wallet, kind=kind, key=key, amount=-debit, stripe_event_id=stripe_event_id, memo=memo)
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
