"""Request id, access log, request metrics and rate-limit headers for every HTTP response.

Sync- and async-capable. It runs async only when everything below it is async-capable; WhiteNoise
6 is sync-only, so today Django runs this chain in a thread under daphne too.
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
