"""Reads: balances, transactions, the daily bonus clock, the token type of a request, ledger invariants."""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.core.paginator import Page, Paginator
from django.db.models import Sum
from django.utils import timezone

from accounts.models import TokenType, TokenTypePreference, User
from billing.models import ZERO, DailyBonusClaim, Hold, LedgerEntry, Wallet
from billing.pricing import QUANTUM
from sogni_platform.exceptions import ApiError


@dataclass(frozen=True)
class WalletView:
    token_type: str
    label: str
    balance: Decimal
    held: Decimal
    available: Decimal
    usd_per_token: Decimal | None

    def usd(self, amount: Decimal) -> Decimal | None:
        return None if self.usd_per_token is None else amount * self.usd_per_token

    @property
    def usd_available(self) -> Decimal | None:
        return self.usd(self.available)


def wallet_views(*, user: User) -> list[WalletView]:
    """Both wallets of `user` (zero where none exists yet), Spark first."""
    from billing.pricing import usd_per_token

    rows = {w.token_type: w for w in Wallet.objects.filter(user=user)}
    views = []
    for token_type, label in TokenType.choices:
        wallet = rows.get(token_type) or Wallet(user=user, token_type=token_type)
        try:
            rate = usd_per_token(token_type)
        except LookupError:
            rate = None
        views.append(WalletView(token_type, label, wallet.balance, wallet.held, wallet.available, rate))
    return views


def ledger_page(*, user: User, page: int | str | None = 1, per_page: int = 10) -> Page:
    entries = LedgerEntry.objects.filter(wallet__user=user).select_related("wallet").order_by("-created_at", "-id")
    return Paginator(entries, per_page).get_page(page)


def next_daily_bonus_at(*, now: datetime.datetime | None = None) -> datetime.datetime:
    """The next UTC midnight: when a new daily bonus can be claimed."""
    now = (now or timezone.now()).astimezone(datetime.UTC)
    return datetime.datetime.combine(now.date() + datetime.timedelta(days=1), datetime.time(), tzinfo=datetime.UTC)


def daily_bonus_claimed_today(*, user: User, now: datetime.datetime | None = None) -> bool:
    day = (now or timezone.now()).astimezone(datetime.UTC).date()
    return DailyBonusClaim.objects.filter(user=user, day=day).exists()


def token_type_requested(*, body_value: object, header_value: str | None, user: User) -> str:
    """spark, sogni or auto: the body's `token_type`, else the X-Token-Type header, else the account default.

    A value present but not one of those is a 400 naming its source.
    """
    for value, param in ((body_value, "token_type"), (header_value, "X-Token-Type")):
        if value is None or value == "":
            continue
        if not isinstance(value, str) or value.strip().lower() not in TokenTypePreference.values:
            raise ApiError(f"{param} must be one of spark, sogni, auto.", param=param, code="invalid_token_type")
        return value.strip().lower()
    return user.default_token_type or TokenTypePreference.AUTO


ESCROW_KINDS = (LedgerEntry.Kind.REWARD, LedgerEntry.Kind.ESCROW_RELEASE)


def wallet_escrowed(*, wallet: Wallet) -> Decimal:
    """Worker rewards credited to `wallet` but held in escrow (part of `held`, not available)."""
    total = LedgerEntry.objects.filter(wallet=wallet, kind__in=ESCROW_KINDS).aggregate(t=Sum("held_change"))["t"]
    return (total or ZERO).quantize(QUANTUM)


def escrow_wallet_ids() -> list[int]:
    """Wallets with rewards still in escrow."""
    rows = (
        LedgerEntry.objects.filter(kind__in=ESCROW_KINDS)
        .values("wallet_id")
        .annotate(t=Sum("held_change"))
        .filter(t__gt=0)
    )
    return [row["wallet_id"] for row in rows]


def ledger_invariant_violations() -> list[str]:
    """Every wallet: its ledger sums to its balance and held amount, held equals its open holds plus its
    escrowed rewards, nothing negative."""
    problems = []
    escrowed = {
        row["wallet_id"]: row["t"] or ZERO
        for row in LedgerEntry.objects.filter(kind__in=ESCROW_KINDS).values("wallet_id").annotate(t=Sum("held_change"))
    }
    # Every amount has at most the ledger's places; on PostgreSQL quantizing changes nothing, on SQLite
    # (embedded mode) SUM runs in floating point and this drops its noise.
    entry_sums: dict[int, tuple[Decimal, Decimal]] = {
        row["wallet_id"]: ((row["amount"] or ZERO).quantize(QUANTUM), (row["held"] or ZERO).quantize(QUANTUM))
        for row in LedgerEntry.objects.values("wallet_id").annotate(amount=Sum("amount"), held=Sum("held_change"))
    }
    open_holds = {
        row["wallet_id"]: row["total"]
        for row in Hold.objects.filter(status=Hold.Status.OPEN).values("wallet_id").annotate(total=Sum("amount"))
    }
    for wallet in Wallet.objects.all():
        amount, held = entry_sums.get(wallet.pk, (ZERO, ZERO))
        if amount != wallet.balance:
            problems.append(f"wallet {wallet.pk}: ledger sums to {amount}, balance is {wallet.balance}")
        if held != wallet.held:
            problems.append(f"wallet {wallet.pk}: ledger holds sum to {held}, held is {wallet.held}")
        reserved = open_holds.get(wallet.pk, ZERO) + escrowed.get(wallet.pk, ZERO)
        if reserved.quantize(QUANTUM) != wallet.held:
            problems.append(f"wallet {wallet.pk}: open holds and escrow sum to {reserved}, held is {wallet.held}")
        if wallet.held < 0 or wallet.balance < wallet.held:
            problems.append(f"wallet {wallet.pk}: balance {wallet.balance}, held {wallet.held}")
    last: dict[int, Decimal] = {}
    for entry in LedgerEntry.objects.order_by("wallet_id", "id").only("wallet_id", "balance_after", "amount"):
        previous = last.get(entry.wallet_id, ZERO)
        if previous + entry.amount != entry.balance_after:
            problems.append(
                f"ledger entry {entry.pk}: balance_after {entry.balance_after} != {previous} + {entry.amount}"
            )
        last[entry.wallet_id] = entry.balance_after
    return problems
