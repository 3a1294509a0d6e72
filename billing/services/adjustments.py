"""Adjustments: an operator's signed correction of a wallet, with its reason."""

from decimal import Decimal

from django.db import transaction

from accounts.models import User
from billing.models import LedgerEntry, Wallet
from billing.services.ledger import entry_post


class AdjustmentRejected(ValueError):
    pass


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
    entry, _ = entry_post(
        wallet,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        key=f"adjustment:{key}",
        amount=amount,
        operator=operator,
        memo=reason.strip(),
    )
    return entry
