"""CORS for the API: browser apps on other origins may call `/v1/*` with an API key.

The API authenticates with bearer keys, never cookies, so any origin may call it by default
(`CORS_ALLOWED_ORIGINS`, `*`); credentials are never allowed. Preflights are answered here, before
any view; every `/v1/` answer, streams included, carries `Access-Control-Allow-Origin`. The
dashboard, console and admin are not under `/v1/` and stay same-origin (no CORS headers).
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpResponse
from django.utils.cache import patch_vary_headers

API_PREFIX = "/v1/"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
# Always allowed, beside whatever else a preflight asks for (the OpenAI SDKs send x-stainless-*).
ALLOW_HEADERS = ("authorization", "content-type", "api-key", "x-token-type", "x-request-id")
MAX_AGE_SECONDS = 600


def _allowed_origin(origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`, or None when it may not call the API."""
    if not origin:
        return None
    allowed = settings.CORS_ALLOWED_ORIGINS
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def _preflight(request, allow_origin: str | None) -> HttpResponse:
    response = HttpResponse(status=204)
    if allow_origin is not None:
        asked = request.headers.get("Access-Control-Request-Headers", "")
        headers = list(ALLOW_HEADERS)
        headers += [h for h in (part.strip().lower() for part in asked.split(",")) if h and h not in headers]
        response["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response["Access-Control-Allow-Headers"] = ", ".join(headers)
        response["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
    patch_vary_headers(response, ("Access-Control-Request-Headers",))
    return response


def _decorate(response, allow_origin: str | None):
    if allow_origin is not None:
        response["Access-Control-Allow-Origin"] = allow_origin
        response["Access-Control-Expose-Headers"] = "*"
    if allow_origin != "*":
        patch_vary_headers(response, ("Origin",))
    return response


class CorsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        allow_origin = _allowed_origin(request.headers.get("Origin"))
        if _is_preflight(request):
            return _decorate(_preflight(request, allow_origin), allow_origin)
        return _decorate(self.get_response(request), allow_origin)

    async def __acall__(self, request):
        if not request.path.startswith(API_PREFIX):
            return await self.get_response(request)
        allow_origin = _allowed_origin(request.headers.get("Origin"))
        if _is_preflight(request):
            return _decorate(_preflight(request, allow_origin), allow_origin)
        return _decorate(await self.get_response(request), allow_origin)


def _is_preflight(request) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
