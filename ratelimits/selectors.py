from dataclasses import dataclass

from django.conf import settings

from ratelimits.models import AccountLimits


@dataclass(frozen=True)
class Limits:
    """Per-minute limits; 0 means unlimited."""

    requests_per_minute: int
    tokens_per_minute: int


def limits_for_user(*, user_id: int) -> Limits:
    override = AccountLimits.objects.filter(user_id=user_id).values("requests_per_minute", "tokens_per_minute").first()
    override = override or {}
    rpm = override.get("requests_per_minute")
    tpm = override.get("tokens_per_minute")
    return Limits(
        requests_per_minute=settings.RATE_LIMIT_RPM if rpm is None else rpm,
        tokens_per_minute=settings.RATE_LIMIT_TPM if tpm is None else tpm,
    )
