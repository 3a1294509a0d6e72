"""Per-key rate limits: requests per minute and tokens per minute, shared by every process through Redis.

One API key per account, so the window belongs to the account (it survives key regeneration) and
operators override it per account (AccountLimits). Without REDIS_URL the windows live in this
process (embedded mode: one process). If Redis cannot be reached, requests are let through (logged):
a limiter outage must not become an API outage.

    state = ratelimit_check_request(api_key=api_key, tokens=estimate)   # raises a 429 ApiError
    request.ratelimit_state = state     # optional: the middleware adds x-ratelimit-* headers
    ratelimit_consume_tokens(user_id=..., tokens=usage.total_tokens)   # after the work

A chat request reserves its worst case once its job is open (ratelimit_tokens_reserve_async) and
corrects it to what it used when it ends (ratelimit_tokens_correct_async), however it ends.
"""

import dataclasses
import logging
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from redis.exceptions import RedisError

from ratelimits.models import AccountLimits
from ratelimits.selectors import Limits, limits_for_user, limits_loaded, limits_of
from ratelimits.window import Mode, WindowResult, window_hit, window_hit_async
from sogni_platform.exceptions import ApiError

logger = logging.getLogger(__name__)


def _duration(seconds: int) -> str:
    """OpenAI's x-ratelimit-reset-* format: "7s", "1m0s"."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"


@dataclass(frozen=True)
class RateLimitState:
    limits: Limits
    requests: WindowResult | None
    tokens: WindowResult | None
    reserved: int = 0  # tokens reserved in the window's bucket `tokens.second`

    def headers(self) -> dict[str, str]:
        headers = {}
        for kind, limit, result in (
            ("requests", self.limits.requests_per_minute, self.requests),
            ("tokens", self.limits.tokens_per_minute, self.tokens),
        ):
            if limit and result is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(limit - result.used, 0))
                headers[f"x-ratelimit-reset-{kind}"] = _duration(result.reset)
        return headers


def _key(kind: str, user_id: int) -> str:
    # The channel-layer prefix namespaces this deployment's Redis keys (and each test run's).
    return f"{settings.CHANNEL_LAYER_PREFIX}:ratelimit:{kind}:{user_id}"


def _rejected(kind: str, limit: int, result: WindowResult, requested: int, state: RateLimitState) -> ApiError:
    retry = max(result.retry_after, 1)
    if requested > limit:
        message = (
            f"Request too large for {kind} per min ({'TPM' if kind == 'tokens' else 'RPM'}): Limit {limit}, "
            f"Requested {requested}. Lower max_tokens or the prompt, or ask an operator to raise your limit."
        )
    else:
        unit = "TPM" if kind == "tokens" else "RPM"
        message = (
            f"Rate limit reached for {kind} per min ({unit}): Limit {limit}, Used {result.used}, "
            f"Requested {requested}. Please try again in {retry}s."
        )
    headers = {**state.headers(), "Retry-After": str(retry)}
    return ApiError(message, status=429, type=kind, code="rate_limit_exceeded", headers=headers)


def _token_probe(tokens: int) -> int:
    # Even a request without an estimate needs one token of room: an exhausted TPM refuses it.
    return max(int(tokens), 1)


def ratelimit_check_request(*, api_key, tokens: int = 0) -> RateLimitState | None:
    """Count one request for the key's account; raise a 429 ApiError when a limit is reached.

    `tokens` is the caller's estimate of the request's tokens (prompt + max_tokens), checked against
    the tokens-per-minute window without taking it (ratelimit_consume_tokens records actual use).
    Returns None when no limit applies or Redis is unreachable.
    """
    limits = limits_of(api_key.user)
    try:
        token_result = None
        if limits.tokens_per_minute:
            token_result = window_hit(
                key=_key("tokens", api_key.user_id),
                limit=limits.tokens_per_minute,
                amount=_token_probe(tokens),
                mode=Mode.CHECK,
            )
        request_result = None
        if limits.requests_per_minute and (token_result is None or token_result.allowed):
            request_result = window_hit(
                key=_key("requests", api_key.user_id), limit=limits.requests_per_minute, amount=1, mode=Mode.CHECK_ADD
            )
    except RedisError as exc:
        logger.warning("rate limits: Redis unreachable (%s); request let through", exc)
        return None
    return _decide(limits, request_result, token_result, tokens)


async def ratelimit_check_request_async(*, api_key, tokens: int = 0) -> RateLimitState | None:
    """`ratelimit_check_request` for code on the event loop (the async chat view)."""
    user = api_key.user
    limits = limits_of(user) if limits_loaded(user) else await database_sync_to_async(limits_for_user)(user_id=user.pk)
    try:
        token_result = None
        if limits.tokens_per_minute:
            token_result = await window_hit_async(
                key=_key("tokens", api_key.user_id),
                limit=limits.tokens_per_minute,
                amount=_token_probe(tokens),
                mode=Mode.CHECK,
            )
        request_result = None
        if limits.requests_per_minute and (token_result is None or token_result.allowed):
            request_result = await window_hit_async(
                key=_key("requests", api_key.user_id), limit=limits.requests_per_minute, amount=1, mode=Mode.CHECK_ADD
            )
    except RedisError as exc:
        logger.warning("rate limits: Redis unreachable (%s); request let through", exc)
        return None
    return _decide(limits, request_result, token_result, tokens)


def _decide(
    limits: Limits, request_result: WindowResult | None, token_result: WindowResult | None, tokens: int
) -> RateLimitState | None:
    if request_result is None and token_result is None:
        return None
    state = RateLimitState(limits=limits, requests=request_result, tokens=token_result)
    if token_result is not None and not token_result.allowed:
        raise _rejected("tokens", limits.tokens_per_minute, token_result, _token_probe(tokens), state)
    if request_result is not None and not request_result.allowed:
        raise _rejected("requests", limits.requests_per_minute, request_result, 1, state)
    return state


def ratelimit_consume_tokens(*, user_id: int, tokens: int) -> None:
    """Record tokens actually used (prompt + completion) in the account's tokens-per-minute window."""
    if tokens <= 0:
        return
    try:
        window_hit(key=_key("tokens", user_id), limit=0, amount=int(tokens), mode=Mode.ADD)
    except RedisError as exc:
        logger.warning("rate limits: Redis unreachable (%s); %s tokens not counted", exc, tokens)


async def ratelimit_consume_tokens_async(*, user_id: int, tokens: int) -> None:
    if tokens <= 0:
        return
    try:
        await window_hit_async(key=_key("tokens", user_id), limit=0, amount=int(tokens), mode=Mode.ADD)
    except RedisError as exc:
        logger.warning("rate limits: Redis unreachable (%s); %s tokens not counted", exc, tokens)


async def ratelimit_tokens_reserve_async(
    *, state: RateLimitState | None, user_id: int, tokens: int
) -> RateLimitState | None:
    """Take a started request's worst case (`tokens`) in the account's tokens-per-minute window, so
    concurrent requests see it; the state returned (headers included) counts it. No limit, nothing taken."""
    if state is None or state.tokens is None or tokens <= 0:
        return state
    try:
        result = await window_hit_async(key=_key("tokens", user_id), limit=0, amount=int(tokens), mode=Mode.ADD)
    except RedisError as exc:
        logger.warning("rate limits: Redis unreachable (%s); %s tokens not reserved", exc, tokens)
        return state
    return dataclasses.replace(state, tokens=result, reserved=int(tokens))


async def ratelimit_tokens_correct_async(*, state: RateLimitState | None, user_id: int, used: int) -> None:
    """A request ended having used `used` tokens: its reservation becomes that (in the bucket it
    was taken in, so it leaves the window when the reservation would have); without one, `used` is added."""
    reserved = state.reserved if state is not None else 0
    if not reserved:
        await ratelimit_consume_tokens_async(user_id=user_id, tokens=used)
        return
    if used > reserved:
        await ratelimit_consume_tokens_async(user_id=user_id, tokens=used - reserved)
        return
    assert state is not None and state.tokens is not None  # a reservation was taken in a window
    try:
        await window_hit_async(
            key=_key("tokens", user_id), limit=0, amount=int(used) - reserved, mode=Mode.ADJUST, at=state.tokens.second
        )
    except RedisError as exc:
        logger.warning("rate limits: Redis unreachable (%s); reservation of %s tokens not corrected", exc, reserved)


def account_limits_set(
    *, user, requests_per_minute: int | None, tokens_per_minute: int | None, note: str = ""
) -> AccountLimits:
    """Override the account's limits (None: the platform default; 0: unlimited). Takes effect at once."""
    limits, _ = AccountLimits.objects.update_or_create(
        user=user,
        defaults={"requests_per_minute": requests_per_minute, "tokens_per_minute": tokens_per_minute, "note": note},
    )
    return limits
