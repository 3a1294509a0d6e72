import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sogni_platform.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from inference.chat import chat_sessions  # noqa: E402
from sogni_platform.routing import websocket_urlpatterns  # noqa: E402

# /static/ answered before Django's middleware.
django_http_app = ASGIStaticFilesHandler(django_asgi_app)


async def http_application(scope, receive, send):
    """Django, and then every chat session the request opened closed (once each): a client gone before
    its stream's first read never starts the generator whose `finally` closes the session and cancels
    its job."""
    sessions: list = []
    token = chat_sessions.set(sessions)  # the view's task inherits this context, and so the list
    try:
        await django_http_app(scope, receive, send)
    finally:
        chat_sessions.reset(token)
        for session in sessions:
            await asyncio.shield(session.close())


# The worker socket is not wrapped in an Origin check: workers are programs, not browsers,
# and authenticate with their API key.
application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
