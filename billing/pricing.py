"""Prices: USD per 1M tokens per model, converted to Spark (fixed) or SOGNI (operator-set rate)."""

from decimal import ROUND_DOWN, ROUND_UP, Decimal

from django.conf import settings
from django.utils import timezone

from accounts.models import TokenType

SPARK_USD = Decimal("0.005")
QUANTUM = Decimal("0.000000001")  # the ledger's 9 decimal places
MILLION = Decimal(1_000_000)


def estimate_usd(*, model, prompt_tokens: int, max_tokens: int) -> Decimal:
    """Worst-case price of a request in USD, exact.

    `model` is an inference.models.LlmModel; prompt tokens at its input price plus `max_tokens`
    at its output price (USD per 1M tokens).
    """
    return usage_usd(model=model, prompt_tokens=prompt_tokens, completion_tokens=max_tokens)


def usage_usd(*, model, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """Actual price in USD of the tokens used, exact (`model`: anything with the two price fields)."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts cannot be negative")
    return (
        Decimal(prompt_tokens) * model.input_price_usd_per_m + Decimal(completion_tokens) * model.output_price_usd_per_m
    ) / MILLION


def sogni_usd_rate() -> Decimal:
    """USD per SOGNI now: the newest operator-set rate in effect."""
    from billing.models import SogniRate

    rate = SogniRate.objects.filter(effective_from__lte=timezone.now()).order_by("-effective_from", "-id").first()
    if rate is None:
        raise LookupError("No SOGNI rate is set; an operator sets one in the admin.")
    return rate.usd_per_sogni


def usd_per_token(token_type: str) -> Decimal:
    return SPARK_USD if token_type == TokenType.SPARK else sogni_usd_rate()


def usd_to_tokens(usd: Decimal, token_type: str, *, round_up: bool = True, rate: Decimal | None = None) -> Decimal:
    """USD in units of `token_type` at the ledger's 9 places.

    What a user pays rounds up, what a worker earns rounds down; `rate` (USD per token) defaults to the current one.
    """
    rate = rate if rate is not None else usd_per_token(token_type)
    return (usd / rate).quantize(QUANTUM, rounding=ROUND_UP if round_up else ROUND_DOWN)


def worker_reward_share() -> Decimal:
    return settings.WORKER_REWARD_SHARE
