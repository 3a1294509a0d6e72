from collections.abc import Mapping
from typing import cast

from accounts.keys import hash_secret, parse_key, secret_matches
from accounts.models import ApiKey
from sogni_platform.prepared import PreparedGet
from sogni_platform.recent import RecentRows

_DUMMY_HASH = "0" * 64

# With the account's rate limits (ratelimits.selectors.limits_of): one statement per request, compiled once.
_key_by_lookup_id = PreparedGet(
    lambda lookup_id: ApiKey.objects.select_related("user__rate_limits").filter(lookup_id=lookup_id)
)
# Keys found, by lookup id; chat requests reuse them for API_KEY_CACHE_SECONDS: every one asks, and under
# load each statement from a server thread waits for the event loop's GIL again.
_found: RecentRows[ApiKey] = RecentRows("API_KEY_CACHE_SECONDS")


def api_keys_found_forget(**kwargs) -> None:
    """A key, its user or the user's limits changed: read every key anew (post_save/post_delete receiver)."""
    _found.forget()


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The raw key from `Authorization: Bearer <key>` or the legacy `api-key: <key>` header.

    `headers` is case-insensitive (request.headers) or lower-cased (ASGI scope headers).
    """
    authorization = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    legacy = headers.get("api-key") or headers.get("Api-Key") or ""
    return legacy.strip() or None


def api_key_authenticate(raw_key: str | None, *, cached: bool = False) -> ApiKey | None:
    """The enabled key (with its active user) that `raw_key` names, or None.

    The one security check for every entry point: HTTP API, SSE and worker sockets.
    The secret is compared in constant time, also for unknown lookup ids. `cached` (chat requests):
    a found key's row is reused for API_KEY_CACHE_SECONDS (a change saved in this process applies at once).
    """
    parsed = parse_key(raw_key or "")
    if parsed is None:
        return None
    lookup_id = parsed.lookup_id

    def read() -> ApiKey | None:
        return cast("ApiKey | None", _key_by_lookup_id.get(lookup_id))

    api_key = _found.get(lookup_id, read) if cached else read()
    if api_key is None:
        secret_matches(parsed.secret, _DUMMY_HASH)
        return None
    if not secret_matches(parsed.secret, api_key.secret_hash):
        return None
    if not api_key.is_enabled or not api_key.user.is_active:
        return None
    return api_key


def api_key_for_user(*, user) -> ApiKey | None:
    """The account's key (enabled or not), or None for accounts made without signup (createsuperuser)."""
    return ApiKey.objects.filter(user=user).first()


def scope_headers(scope: Mapping) -> dict[str, str]:
    """ASGI scope headers as a lower-cased dict, for `api_key_from_headers`."""
    return {name.decode("latin1").lower(): value.decode("latin1") for name, value in scope.get("headers", [])}


__all__ = ["api_key_authenticate", "api_key_for_user", "api_key_from_headers", "hash_secret", "scope_headers"]
