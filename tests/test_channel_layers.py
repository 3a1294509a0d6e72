"""The channel layer: in-process messages skip Redis; messages from other processes still arrive."""

import asyncio
import threading

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from sogni_platform.channel_layers import LocalFirstChannelLayer


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def layer_config():
    return settings.CHANNEL_LAYERS["default"]["CONFIG"]


def publishes(client) -> int:
    return client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)


def test_in_process_messages_arrive_in_order_without_touching_redis(redis_client):
    async def scenario():
        layer = LocalFirstChannelLayer(**layer_config())
        channel = await layer.new_channel()
        before = publishes(redis_client)
        for number in range(1000):
            await layer.send(channel, {"type": "job.delta", "number": number})
        received = [(await layer.receive(channel))["number"] for _ in range(1000)]
        after = publishes(redis_client)
        await layer.flush()
        return received, after - before

    received, published = async_to_sync(scenario)()
    assert received == list(range(1000))
    assert published < 50  # other processes on this Redis may publish; these 1000 did not


def test_messages_from_another_process_arrive_through_redis():
    async def scenario():
        here, elsewhere = LocalFirstChannelLayer(**layer_config()), LocalFirstChannelLayer(**layer_config())
        channel = await here.new_channel()
        await elsewhere.send(channel, {"type": "job.done", "from": "elsewhere"})
        await here.send(channel, {"type": "job.delta", "from": "here"})
        messages = [await asyncio.wait_for(here.receive(channel), 5) for _ in range(2)]
        await here.flush()
        await elsewhere.flush()
        return sorted(message["from"] for message in messages)

    assert async_to_sync(scenario)() == ["elsewhere", "here"]


def test_a_send_from_another_thread_reaches_the_channels_loop():
    async def scenario():
        layer = LocalFirstChannelLayer(**layer_config())
        channel = await layer.new_channel()
        thread = threading.Thread(target=lambda: asyncio.run(layer.send(channel, {"type": "job.done"})))
        thread.start()
        message = await asyncio.wait_for(layer.receive(channel), 5)
        thread.join()
        await layer.flush()
        return message

    assert async_to_sync(scenario)() == {"type": "job.done"}


def subscriptions(client) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{command}", {}).get("calls", 0) for command in ("subscribe", "unsubscribe"))


def test_a_loops_channels_share_one_redis_subscription(redis_client):
    """A request's reply channel costs Redis nothing to open or close: the loop's inbox is subscribed once."""

    async def scenario():
        layer = LocalFirstChannelLayer(**layer_config())
        first = await layer.new_channel()
        before = subscriptions(redis_client)
        for _ in range(200):
            layer.discard(await layer.new_channel())
        after = subscriptions(redis_client)
        inbox = first.rpartition("!")[0]
        subscribers = redis_client.pubsub_numsub(inbox)[0][1]
        await layer.flush()
        for _ in range(100):
            if redis_client.pubsub_numsub(inbox)[0][1] == 0:
                break
            await asyncio.sleep(0.02)
        return after - before, subscribers, redis_client.pubsub_numsub(inbox)[0][1]

    changes, subscribers, after_flush = async_to_sync(scenario)()
    assert subscribers == 1
    assert changes < 20  # other processes on this Redis may subscribe; these 200 channels did not
    assert after_flush == 0


def test_a_cancelled_receive_gives_the_channel_up():
    async def scenario():
        here, elsewhere = LocalFirstChannelLayer(**layer_config()), LocalFirstChannelLayer(**layer_config())
        channel, other = await here.new_channel(), await here.new_channel()
        waiting = asyncio.ensure_future(here.receive(channel))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # A late message from another process is dropped instead of piling up in a dead queue; the
        # loop's other channels still hear from Redis.
        await elsewhere.send(channel, {"type": "job.delta", "late": True})
        await elsewhere.send(other, {"type": "job.done"})
        message = await asyncio.wait_for(here.receive(other), 5)
        await here.flush()
        await elsewhere.flush()
        return channel in here.local, message

    assert async_to_sync(scenario)() == (False, {"type": "job.done"})


def test_a_channel_made_on_a_loop_since_closed_is_read_on_the_next_one():
    """A channel opened in one `async_to_sync` call and read in a later one (tests do this) is taken
    over by the reading loop, messages from other processes included."""
    layer, elsewhere = LocalFirstChannelLayer(**layer_config()), LocalFirstChannelLayer(**layer_config())
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, {"type": "job.assigned"})

    async def scenario():
        first = await asyncio.wait_for(layer.receive(channel), 5)
        await asyncio.sleep(0.2)  # the taken-over inbox is subscribed on this loop
        await elsewhere.send(channel, {"type": "job.done"})
        second = await asyncio.wait_for(layer.receive(channel), 5)
        await layer.flush()
        await elsewhere.flush()
        return first["type"], second["type"]

    assert async_to_sync(scenario)() == ("job.assigned", "job.done")


@pytest.mark.django_db(transaction=True)
def test_health_checks_leave_no_channel_behind():
    """/healthz opens a channel to check the layer: a probe every few seconds must not pile them up."""
    from channels.layers import get_channel_layer
    from django.test import RequestFactory

    from sogni_platform.health import healthz

    async def scenario():
        layer = get_channel_layer()
        before = len(layer.local)
        statuses = [(await healthz(RequestFactory().get("/healthz"))).status_code for _ in range(5)]
        return statuses, len(layer.local) - before

    assert async_to_sync(scenario)() == ([200] * 5, 0)


def test_a_reader_too_far_behind_gets_one_overflow_message_and_nothing_more():
    from sogni_platform.channel_layers import CHANNEL_OVERFLOW

    async def scenario():
        here = LocalFirstChannelLayer(**{**layer_config(), "capacity": 5})
        elsewhere = LocalFirstChannelLayer(**layer_config())
        channel = await here.new_channel()
        for number in range(8):
            await here.send(channel, {"type": "job.delta", "number": number})
        await elsewhere.send(channel, {"type": "job.done"})  # through Redis: dropped too
        await asyncio.sleep(0.3)
        received = [here.receive_nowait(channel) for _ in range(7)]
        await here.flush()
        await elsewhere.flush()
        return received

    received = async_to_sync(scenario)()
    assert [message.get("number") for message in received[:5]] == [0, 1, 2, 3, 4]
    assert received[5] == {"type": CHANNEL_OVERFLOW}
    assert received[6] is None
