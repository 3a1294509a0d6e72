import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sogni_platform.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from inference.chat import chat_sessions  # noqa: E402
from sogni_platform.cors import CorsMiddleware  # noqa: E402
from sogni_platform.middleware import RequestIdMiddleware  # noqa: E402
from sogni_platform.routing import websocket_urlpatterns  # noqa: E402

API_FAST_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


class ApiASGIHandler(ASGIHandler):
    """The chat endpoint with only the middleware an API call needs: request id, access log, metrics,
    rate-limit headers and CORS. The browser middleware (sessions, CSRF, auth, messages) is sync and
    would run each of its hooks in a thread, some fourteen hops per request, for a view that uses
    none of it (it authenticates by API key)."""

    def load_middleware(self, is_async=False):
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response_async)
        handler = convert_exception_to_response(CorsMiddleware(handler))
        self._middleware_chain = convert_exception_to_response(RequestIdMiddleware(handler))

    async def __call__(self, scope, receive, send):
        """Without Django's per-request ThreadSensitiveContext: the view's database work runs in pool
        threads (inference.chat.in_db_thread), and nothing else of the request needs a thread of its own."""
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        """A client gone before its stream's first read (the view, its middleware or the send cancelled)
        never starts the generator whose `finally` closes the chat session and cancels its job: every
        session the request opened is closed here as well (a session closes once)."""
        sessions = []
        token = chat_sessions.set(sessions)
        try:
            await self._handle(scope, receive, send)
        finally:
            chat_sessions.reset(token)
            for session in sessions:
                await asyncio.shield(session.close())

    async def _handle(self, scope, receive, send):
        """Django 5.2's ASGIHandler.handle without the request_started and request_finished signals: each
        runs its sync receivers in a hop to asgiref's one shared thread, which every concurrent request
        queues for, to close that thread's database connections and reset its query log. This view's
        database work runs in pool threads that close their own (inference.chat.in_db_thread)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client disconnected during the send
            return response

        # The disconnect listener first: it cannot raise anything that would keep the view from being cancelled.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()  # the view sees the cancellation
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if not tasks[1].cancelled():
            for close in tasks[1].result()._resource_closers:  # what response.close() does, but the signal
                close()
        body_file.close()


api_asgi_app = ApiASGIHandler()
# /static/ answered before Django's middleware, so the chain stays async for the API (docs/performance.md).
site_asgi_app = ASGIStaticFilesHandler(django_asgi_app)


async def http_application(scope, receive, send):
    app = api_asgi_app if scope["path"] in API_FAST_PATHS else site_asgi_app
    await app(scope, receive, send)


# The worker socket is not wrapped in an Origin check: workers are programs, not browsers,
# and authenticate with their API key.
application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
