"""Grants: Spark given, not bought — the starter grant (once per verified account) and the daily bonus."""

import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import TokenType, User
from accounts.verification import user_email_verify
from billing.models import DailyBonusClaim, LedgerEntry
from billing.selectors import next_daily_bonus_at
from billing.services.ledger import entry_post, wallet_lock, wallets_ensure

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


@transaction.atomic
def starter_grant_credit(*, user: User) -> LedgerEntry | None:
    """Creates the user's wallets and credits settings.STARTER_GRANT_SPARK once (idempotent per user)."""
    wallets_ensure(user=user)
    amount = Decimal(str(settings.STARTER_GRANT_SPARK))
    if amount <= 0:
        return None
    wallet = wallet_lock(user_id=user.pk, token_type=TokenType.SPARK)
    entry, _ = entry_post(
        wallet, kind=Kind.STARTER_GRANT, key=f"starter_grant:{user.pk}", amount=amount, memo="Welcome"
    )
    return entry


@transaction.atomic
def account_verify(*, user: User) -> bool:
    """The emailed link was opened: the address is verified (accounts) and the starter grant credited;
    True the first time only. Idempotent: the grant is written once per account (its ledger key)."""
    first = user_email_verify(user=user)
    starter_grant_credit(user=user)
    return first


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
    wallet = wallet_lock(user_id=user.pk, token_type=TokenType.SPARK)
    amount = Decimal(str(settings.DAILY_BONUS_SPARK))
    key = f"daily_bonus:{user.pk}:{day.isoformat()}"
    entry, _ = entry_post(wallet, kind=Kind.DAILY_BONUS, key=key, amount=amount)
    return entry
