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
    if override is None:
        return _limits(None, None)
    return _limits(override["requests_per_minute"], override["tokens_per_minute"])


def limits_loaded(user) -> bool:
    """True when `limits_of(user)` needs no query (api_key_authenticate loads the user's limits with it)."""
    return type(user).rate_limits.is_cached(user)


def limits_of(user) -> Limits:
    try:
        override = user.rate_limits
    except AccountLimits.DoesNotExist:
        return _limits(None, None)
    return _limits(override.requests_per_minute, override.tokens_per_minute)


def _limits(rpm: int | None, tpm: int | None) -> Limits:
    """None: the setting's default; 0: unlimited."""
    return Limits(
        requests_per_minute=settings.RATE_LIMIT_RPM if rpm is None else rpm,
        tokens_per_minute=settings.RATE_LIMIT_TPM if tpm is None else tpm,
    )
