"""The ledger: wallets and their entries. Every balance change is one entry posted here.

Each change locks the wallet row, appends one LedgerEntry with a unique idempotency key and updates
the wallet, in one transaction: the ledger of a wallet sums to its balance (`amount`) and its held
amount (`held_change`), and a key already written changes nothing.
"""

from decimal import Decimal

from django.db import connection
from django.utils import timezone

from accounts.models import TokenType, User
from billing.models import ZERO, LedgerEntry, Wallet
from billing.pricing import QUANTUM
from sogni_platform.exceptions import InsufficientBalance

# One wallet's change by a group of entries: it locks the row and returns the new amounts.
# Parameters: amount, held change, now, wallet id.
WALLET_CHANGE_SQL = (
    "UPDATE billing_wallet SET balance = balance + %s, held = held + %s, updated_at = %s "
    "WHERE id = %s RETURNING balance, held"
)


def wallets_ensure(*, user: User) -> dict[str, Wallet]:
    """Both wallets of `user`, created empty if missing (safe under concurrency)."""
    return {tt: Wallet.objects.get_or_create(user=user, token_type=tt)[0] for tt in TokenType.values}


def wallet_lock(*, user_id: int, token_type: str) -> Wallet:
    """The account's wallet of `token_type`, locked to the commit; created empty if missing."""
    wallet = Wallet.objects.select_for_update().filter(user_id=user_id, token_type=token_type).first()
    if wallet is not None:
        return wallet
    Wallet.objects.get_or_create(user_id=user_id, token_type=token_type)
    return Wallet.objects.select_for_update().get(user_id=user_id, token_type=token_type)


def amount_exact(value) -> Decimal:
    """An amount a raw statement read: PostgreSQL gives a Decimal; SQLite (embedded mode) an int or a
    float, whose noise the ledger's 9 places drop."""
    return value if isinstance(value, Decimal) else Decimal(str(value)).quantize(QUANTUM)


def entry_post(
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
) -> tuple[LedgerEntry, bool]:
    """Append one entry to a wallet locked by the caller and save the wallet; (entry, False) if `key`
    was already written. `new_key`: the caller's own lock proves the key unwritten, so the lookup is
    skipped; the unique index still guards it."""
    existing = None if new_key else LedgerEntry.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return existing, False
    balance, held = wallet.balance + amount, wallet.held + held_change
    if held < 0 or balance - held < 0:
        raise InsufficientBalance(
            f"Insufficient {wallet.get_token_type_display()} balance: available {wallet.available.normalize():f}."
        )
    wallet.balance, wallet.held, wallet.updated_at = balance, held, timezone.now()
    wallet.save(update_fields=["balance", "held", "updated_at"])
    entry = LedgerEntry.objects.create(
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
    return entry, True


def entries_post_new(entries: list[LedgerEntry]) -> None:
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
            cursor.execute(WALLET_CHANGE_SQL, [amount, held_change, now, wallet_id])
            balance, held = cursor.fetchone()
            # As the first entry found it.
            balance, held = amount_exact(balance) - amount, amount_exact(held) - held_change
            for entry in group:
                balance, held = balance + entry.amount, held + entry.held_change
                if held < 0 or balance - held < 0:
                    raise InsufficientBalance(f"Insufficient balance in wallet {wallet_id}: {entry.idempotency_key}.")
                entry.balance_after, entry.held_after = balance, held
    LedgerEntry.objects.bulk_create(entries)
