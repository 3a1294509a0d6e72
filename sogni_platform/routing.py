from django.urls import path

from inference.consumers import WorkerConsumer

# Workers are programs, not browsers: no Origin validator on this route; they authenticate with their API key.
websocket_urlpatterns: list = [
    path("ws/worker/", WorkerConsumer.as_asgi()),  # type: ignore[arg-type]  # channels routes ASGI apps by path
]
