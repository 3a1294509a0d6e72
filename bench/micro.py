"""Per-message cost of the channel layer the relay uses (one message per token), measured
alone: `python -m bench.micro --redis-url redis://127.0.0.1:6379/13`. Prints JSON: wall and CPU
milliseconds per message for a send+receive pair, one message at a time and as 8-token batches."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid


async def _pairs(layer, n: int, tokens_per_message: int) -> dict:
    channel = await layer.new_channel()
    first = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.05)  # subscribed
    await layer.send(channel, {"type": "job.delta", "content": " tok" * tokens_per_message, "tokens": 1})
    await first
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        pending = asyncio.ensure_future(layer.receive(channel))
        await layer.send(channel, {"type": "job.delta", "content": " tok" * tokens_per_message, "tokens": 1})
        await pending
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "messages": n,
        "tokens_per_message": tokens_per_message,
        "wall_ms_per_message": round(wall / n * 1000, 3),
        "cpu_ms_per_message": round(cpu / n * 1000, 3),
        "cpu_ms_per_token": round(cpu / n / tokens_per_message * 1000, 3),
    }


async def main_async(redis_url: str, n: int) -> dict:
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=[redis_url], prefix=f"bench-micro-{uuid.uuid4().hex[:6]}")
    try:
        return {"one_token": await _pairs(layer, n, 1), "batch_of_8": await _pairs(layer, n // 8, 8)}
    finally:
        await layer.flush()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.micro")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("-n", type=int, default=4000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.redis_url, args.n)), indent=1))


if __name__ == "__main__":
    main()
