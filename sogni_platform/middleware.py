"""Request id, access log, request metrics and rate-limit headers for every HTTP response; and the
404/500 handlers that keep errors under /v1/ OpenAI-shaped.

Sync- and async-capable. It runs async only when everything below it is async-capable (it is since
static files moved from WhiteNoise's sync-only middleware to ASGIStaticFilesHandler in asgi.py).
"""

import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.views import defaults

from sogni_platform import metrics
from sogni_platform.exceptions import ApiError, NotFound, error_response
from sogni_platform.logging import request_id_accept, request_id_var

logger = logging.getLogger("sogni.request")

REQUEST_ID_HEADER = "x-request-id"


def _route(request) -> str:
    match = getattr(request, "resolver_match", None)
    return match.route if match is not None and match.route else "unmatched"


class RequestIdMiddleware:
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
        started = self._start(request)
        # Not reset afterwards: under daphne this sync path runs in a sync_to_async thread whose context
        # asgiref copies back, so Django's own response logging and a streamed body keep the id; a
        # thread's next request sets its own.
        request_id_var.set(request.request_id)
        response = self.get_response(request)
        self._finish(request, response, started)
        metrics.metrics_count_request(method=request.method, route=_route(request), status=response.status_code)
        return response

    async def __acall__(self, request):
        started = self._start(request)
        # Each ASGI request runs in its own task (own context); streaming bodies keep logging this id.
        request_id_var.set(request.request_id)
        response = await self.get_response(request)
        self._finish(request, response, started)
        await metrics.metrics_count_request_async(
            method=request.method, route=_route(request), status=response.status_code
        )
        return response

    @staticmethod
    def _start(request) -> float:
        request.request_id = request_id_accept(request.headers.get(REQUEST_ID_HEADER))
        return time.monotonic()

    @staticmethod
    def _finish(request, response, started: float) -> None:
        response[REQUEST_ID_HEADER] = request.request_id
        state = getattr(request, "ratelimit_state", None)
        if state is not None:
            for name, value in state.headers().items():
                response.headers.setdefault(name, value)
        logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )


def _wants_api_error(request) -> bool:
    return request.path.startswith("/v1/")


def page_not_found(request, exception=None):
    """handler404: OpenAI-shaped under /v1/ (e.g. a path no route matches), Django's page elsewhere."""
    if _wants_api_error(request):
        return error_response(NotFound(f"Invalid URL ({request.method} {request.path})"))
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: OpenAI-shaped under /v1/; the exception itself is logged by Django with the request id."""
    if _wants_api_error(request):
        return error_response(
            ApiError(
                "The server had an error while processing your request. Retry, and quote the x-request-id "
                "response header if it persists.",
                status=500,
                type="server_error",
            )
        )
    return defaults.server_error(request)
