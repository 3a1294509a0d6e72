"""Worker earnings escrow: during an owner's probation their rewards are credited and held.

A reward posted during probation has `held_change` = its amount (billing.services.holds.hold_settle); once the
probation ends one `escrow_release` entry per wallet makes the escrowed total available. The ledger
invariant counts escrow with the open holds (billing.selectors.ledger_invariant_violations).
"""

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import LedgerEntry, Wallet
from billing.selectors import escrow_wallet_ids, wallet_escrowed
from billing.services.ledger import entry_post

Kind = LedgerEntry.Kind


def probation_end(first_reward_at: datetime.datetime | None) -> datetime.datetime:
    """Probation runs WORKER_PROBATION_DAYS from the owner's first reward (now, for a first one)."""
    return (first_reward_at or timezone.now()) + datetime.timedelta(days=settings.WORKER_PROBATION_DAYS)


def escrow_probation_ends(*, wallet: Wallet) -> datetime.datetime:
    first = LedgerEntry.objects.filter(wallet=wallet, kind=Kind.REWARD).order_by("id").values("created_at").first()
    return probation_end(first["created_at"] if first else None)


def escrow_release_due(*, now: datetime.datetime | None = None) -> int:
    """Make escrowed rewards available for every owner whose probation has ended; how many wallets."""
    now = now or timezone.now()
    released = 0
    for wallet_id in escrow_wallet_ids():
        with transaction.atomic():
            wallet = Wallet.objects.select_for_update().get(pk=wallet_id)
            escrowed = wallet_escrowed(wallet=wallet)
            if escrowed <= 0 or escrow_probation_ends(wallet=wallet) > now:
                continue
            last = LedgerEntry.objects.filter(wallet=wallet).order_by("-id").values_list("id", flat=True).first()
            entry_post(
                wallet,
                kind=Kind.ESCROW_RELEASE,
                key=f"escrow_release:{wallet.pk}:{last}",
                held_change=-escrowed,
                memo="Probation ended: worker earnings available",
            )
            released += 1
    return released
