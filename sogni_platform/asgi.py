import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sogni_platform.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from sogni_platform.routing import websocket_urlpatterns  # noqa: E402

# The worker socket is not wrapped in an Origin check: workers are programs, not browsers,
# and authenticate with their API key.
application = ProtocolTypeRouter(
    {
        # /static/ answered before Django's middleware, so the chain stays async for the API (README "Benchmarks").
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
