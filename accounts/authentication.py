from collections.abc import Mapping

from rest_framework.authentication import BaseAuthentication

from accounts.models import ApiKey
from accounts.selectors import api_key_authenticate, api_key_from_headers
from sogni_platform.exceptions import InvalidApiKey

MISSING_KEY = (
    "You didn't provide an API key. Provide it in the Authorization header as 'Bearer <key>' "
    "(or the api-key header). Get a key from the dashboard."
)
INVALID_KEY = "Incorrect or disabled API key provided. You can find your API key in the dashboard."


def api_key_required(headers: Mapping[str, str], *, cached: bool = False) -> ApiKey:
    """The enabled key a request's headers carry; InvalidApiKey (401) when it is missing or wrong.
    `cached`: as api_key_authenticate's (the user's other fields may then be as old as the cache)."""
    raw_key = api_key_from_headers(headers)
    if raw_key is None:
        raise InvalidApiKey(MISSING_KEY)
    api_key = api_key_authenticate(raw_key, cached=cached)
    if api_key is None:
        raise InvalidApiKey(INVALID_KEY)
    return api_key


class ApiKeyAuthentication(BaseAuthentication):
    """DRF authentication over the shared API-key selector; failures answer 401."""

    def authenticate(self, request):
        api_key = api_key_required(request.headers)
        return api_key.user, api_key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
