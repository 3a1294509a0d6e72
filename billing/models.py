"""Wallets, the append-only ledger, holds, the SOGNI rate and Stripe bookkeeping.

Rows here are written only through billing.services (the ledger under a wallet row lock).
"""

from decimal import Decimal
from typing import TypedDict

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import TokenType

# 9 places (nano-tokens): one token at $0.30/1M is 0.00006 Spark, exact. With at most 15 significant
# digits SQLite (embedded mode) also keeps amounts exact up to 999,999 tokens; PostgreSQL always does.


class Digits(TypedDict):
    max_digits: int
    decimal_places: int


AMOUNT: Digits = {"max_digits": 24, "decimal_places": 9}
# USD figures and rates are not ledger amounts: room for a single token at a 6-place price per 1M.
USD: Digits = {"max_digits": 30, "decimal_places": 18}
ZERO = Decimal("0")


class Wallet(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="wallets")
    token_type = models.CharField(max_length=8, choices=TokenType.choices)
    balance = models.DecimalField(**AMOUNT, default=ZERO)
    held = models.DecimalField(**AMOUNT, default=ZERO)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["user_id", "token_type"]
        constraints = [
            models.UniqueConstraint(fields=["user", "token_type"], name="billing_wallet_user_token_type_unique"),
            models.CheckConstraint(condition=Q(held__gte=0), name="billing_wallet_held_not_negative"),
            models.CheckConstraint(condition=Q(balance__gte=F("held")), name="billing_wallet_available_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.get_token_type_display()}"

    @property
    def available(self) -> Decimal:
        return self.balance - self.held


class LedgerEntry(models.Model):
    """Append-only. `amount` changes the balance, `held_change` the held amount; both signed."""

    class Kind(models.TextChoices):
        STARTER_GRANT = "starter_grant", "Starter grant"
        DAILY_BONUS = "daily_bonus", "Daily bonus"
        TOPUP = "topup", "Top-up"
        HOLD = "hold", "Hold"
        RELEASE = "release", "Release"
        CHARGE = "charge", "Charge"
        REWARD = "reward", "Worker reward"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"
        CHARGEBACK = "chargeback", "Chargeback"
        ESCROW_RELEASE = "escrow_release", "Escrow release"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(**AMOUNT)
    held_change = models.DecimalField(**AMOUNT, default=ZERO)
    balance_after = models.DecimalField(**AMOUNT)
    held_after = models.DecimalField(**AMOUNT)
    idempotency_key = models.CharField(max_length=200, unique=True)
    job_id = models.CharField(max_length=100, blank=True, db_index=True)
    stripe_event_id = models.CharField(max_length=100, blank=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    memo = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.wallet})"


class Hold(models.Model):
    """The reservation for one job; a wallet's held amount is the sum of its open holds."""

    class Status(models.TextChoices):
        OPEN = "open"
        SETTLED = "settled"
        RELEASED = "released"

    job_id = models.CharField(max_length=100, unique=True)
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds")
    model_id = models.CharField(max_length=128)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN, db_index=True)
    amount = models.DecimalField(**AMOUNT)
    usd_estimate = models.DecimalField(**USD)
    # Prices in effect when the hold was taken; settlement charges at these.
    input_price_usd_per_m = models.DecimalField(max_digits=12, decimal_places=6, default=ZERO)
    output_price_usd_per_m = models.DecimalField(max_digits=12, decimal_places=6, default=ZERO)
    usd_per_token = models.DecimalField(**USD, default=ZERO)
    charged = models.DecimalField(**AMOUNT, default=ZERO)
    usd_charged = models.DecimalField(**USD, default=ZERO)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    worker_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reward = models.DecimalField(**AMOUNT, default=ZERO)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="billing_hold_amount_not_negative"),
            models.CheckConstraint(condition=Q(charged__lte=F("amount")), name="billing_hold_charge_within_hold"),
        ]

    def __str__(self) -> str:
        return f"hold {self.job_id} {self.status}"

    @property
    def token_type(self) -> str:
        return self.wallet.token_type


class DailyBonusClaim(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="billing_daily_bonus_once_per_day")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}"


class SogniRate(models.Model):
    """USD per SOGNI, set by operators; the newest row in effect is the current rate, older rows are history."""

    usd_per_sogni = models.DecimalField(**USD)
    effective_from = models.DateTimeField(default=timezone.now, db_index=True)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-effective_from", "-id"]
        verbose_name = "SOGNI rate"
        constraints = [models.CheckConstraint(condition=Q(usd_per_sogni__gt=0), name="billing_sogni_rate_positive")]

    def __str__(self) -> str:
        return f"1 SOGNI = ${self.usd_per_sogni.normalize():f} from {self.effective_from:%Y-%m-%d %H:%M}"


class TopUp(models.Model):
    """One Stripe Checkout Session for Spark."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        FAILED = "failed"
        REFUNDED = "refunded"
        DISPUTED = "disputed", "Dispute lost"

    # The Spark was credited: refunds and lost disputes may take it back.
    CREDITED = (Status.PAID, Status.REFUNDED, Status.DISPUTED)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    session_id = models.CharField(max_length=255, unique=True)
    payment_intent = models.CharField(max_length=255, blank=True, db_index=True)
    usd_cents = models.PositiveIntegerField()
    spark = models.DecimalField(**AMOUNT)
    spark_refunded = models.DecimalField(**AMOUNT, default=ZERO)
    # Taken back by a lost dispute (a charge has at most one).
    spark_disputed = models.DecimalField(**AMOUNT, default=ZERO)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "top-up"

    def __str__(self) -> str:
        return f"{self.session_id} {self.status}"


class StripeEvent(models.Model):
    """Each Stripe event once: the primary key is Stripe's event id."""

    id = models.CharField(primary_key=True, max_length=255)
    type = models.CharField(max_length=100)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    outcome = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "Stripe event"

    def __str__(self) -> str:
        return f"{self.id} {self.type}"


class AccountDebt(models.Model):
    """What a refund or chargeback took back that the balance could not cover."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    token_type = models.CharField(max_length=8, choices=TokenType.choices, default=TokenType.SPARK)
    amount = models.DecimalField(**AMOUNT)
    reason = models.CharField(max_length=200)
    stripe_event_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "account debt"

    def __str__(self) -> str:
        return f"{self.user} owes {self.amount} {self.token_type}"
