import asyncio
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


async def _channel_layer_ok() -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        channel = await layer.new_channel()
    except Exception:
        return False
    try:
        probe = {"type": "health.probe", "nonce": uuid.uuid4().hex}
        await asyncio.wait_for(layer.send(channel, probe), timeout=2)
        received = await asyncio.wait_for(layer.receive(channel), timeout=2)
        return received.get("nonce") == probe["nonce"]
    except Exception:
        return False
    finally:
        discard = getattr(layer, "discard", None)  # sogni_platform.channel_layers: no channel left per probe
        if discard is not None:
            discard(channel)


async def healthz(request):
    database = await sync_to_async(_database_ok)()
    channel_layer = await _channel_layer_ok()
    ok = database and channel_layer
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "database": database, "channel_layer": channel_layer},
        status=200 if ok else 503,
    )
