"""Request id, access log, request metrics and rate-limit headers for every HTTP response.

Sync- and async-capable: under daphne the whole chain stays async (the SSE chat view included).
"""

import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from sogni_platform import metrics
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
        # A sync thread serves many requests: do not leak this id into the next one.
        token = request_id_var.set(request.request_id)
        try:
            response = self.get_response(request)
            self._finish(request, response, started)
            metrics.metrics_count_request(method=request.method, route=_route(request), status=response.status_code)
        finally:
            request_id_var.reset(token)
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
