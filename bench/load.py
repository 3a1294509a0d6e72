"""One async load generator for the platform and the engine alone: OpenAI chat completions over
httpx, streaming (TTFT, inter-token gaps, end-to-end) or short non-streaming calls (requests/s).

Each request's user message starts with its own nonce; the scripted engine echoes the first word, so
every reply can be checked for its own marker and for anyone else's (cross-talk).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, field

import httpx

NONCE = re.compile(r"\bn[0-9a-f]{16}x\b")


@dataclass
class Target:
    name: str  # "platform" or "direct"
    urls: list[str]  # base URLs; requests round-robin over them (several engine-alone servers)
    model: str
    key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


@dataclass
class Result:
    nonce: str
    ok: bool = False
    error: str | None = None
    status: int | None = None
    ttft: float | None = None
    e2e: float | None = None
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    content: str = ""
    ids: set[str] = field(default_factory=set)
    sent_at: float = 0.0  # wall clock (time.time), to line up with the platform's job timestamps
    first_at: float | None = None
    warmup: bool = False  # a staggered client's first request, sent while the load still ramps up
    events: list[float] = field(default_factory=list)  # perf_counter of each SSE `data:` line (not keep-alives)
    last_token_at: float | None = None  # perf_counter of the last content delta


def _body(nonce: str | None, *, stream: bool, max_tokens: int, prompt: str) -> dict:
    body = {
        "messages": [{"role": "user", "content": f"{nonce} {prompt}" if nonce else prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def _stream_one(client: httpx.AsyncClient, url: str, target: Target, result: Result, body: dict) -> None:
    started = time.perf_counter()
    result.sent_at = time.time()
    last = None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=target.headers()) as response:
        result.status = response.status_code
        if response.status_code != 200:
            result.error = f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
            return
        done, content_chunks = False, 0
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            result.events.append(time.perf_counter())
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                result.error = f"stream error: {chunk['error'].get('code')}: {chunk['error'].get('message')}"
                return
            result.ids.add(chunk.get("id", ""))
            if chunk.get("usage"):
                result.tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                if not text:
                    continue
                now = time.perf_counter()
                if last is None:
                    result.ttft = now - started
                    result.first_at = time.time()
                else:
                    result.gaps.append(now - last)
                last = result.last_token_at = now
                result.content += text
                content_chunks += 1
        result.e2e = time.perf_counter() - started
        if not result.tokens:  # no usage chunk (llama_cpp.server ignores stream_options): a token a chunk
            result.tokens = content_chunks
        if not done:
            result.error = "stream ended without [DONE]"
            return
    result.ok = True


async def _collect_one(client: httpx.AsyncClient, url: str, target: Target, result: Result, body: dict) -> None:
    started = time.perf_counter()
    response = await client.post(f"{url}/v1/chat/completions", json=body, headers=target.headers())
    result.e2e = time.perf_counter() - started
    result.status = response.status_code
    if response.status_code != 200:
        result.error = f"HTTP {response.status_code}: {response.text[:300]}"
        return
    payload = response.json()
    result.ids.add(payload.get("id", ""))
    result.content = payload["choices"][0]["message"].get("content") or ""
    result.tokens = payload["usage"]["completion_tokens"]
    result.ok = True


async def drive(
    target: Target,
    *,
    concurrency: int,
    requests: int,
    stream: bool,
    max_tokens: int,
    prompt: str = "please answer briefly",
    marker: bool = True,
    timeout: float = 300,
    ramp_s: float = 0.0,
) -> tuple[list[Result], float]:
    """`requests` calls, `concurrency` at a time; the results and the wall time.

    `ramp_s` > 0 staggers the clients: client k starts k * ramp_s / concurrency seconds in, and each
    client's first request is an extra one marked `warmup` (it ran while the load was ramping up).
    Set to one reply's duration, that is a steady load of `concurrency` streams whose arrivals are
    spread out, as concurrent users' are; 0 starts every client at once (a burst, every round).
    """
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    counter = itertools.count()
    results: list[Result] = []

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def loop(k: int) -> None:
            warmup = ramp_s > 0
            if warmup:
                await asyncio.sleep(k * ramp_s / concurrency)
            while warmup or (i := next(counter)) < requests:
                if warmup:
                    i = k
                result = Result(nonce=f"n{uuid.uuid4().hex[:16]}x", warmup=warmup)
                warmup = False
                results.append(result)
                url = target.urls[i % len(target.urls)]
                body = _body(result.nonce if marker else None, stream=stream, max_tokens=max_tokens, prompt=prompt)
                if target.model:
                    body["model"] = target.model
                try:
                    await (_stream_one if stream else _collect_one)(client, url, target, result, body)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    result.error = f"{type(exc).__name__}: {exc}"

        started = time.perf_counter()
        await asyncio.gather(*(loop(k) for k in range(concurrency)))
        wall = time.perf_counter() - started
    return results, wall


def cross_talk(results: list[Result], *, scripted: bool) -> dict[str, int]:
    """Replies carrying another request's marker, replies missing their own (scripted only), and
    completion ids seen in more than one request or more than one id in a stream."""
    foreign = missing = 0
    if scripted:
        for result in results:
            if not result.ok:
                continue
            markers = set(NONCE.findall(result.content))
            if markers - {result.nonce}:
                foreign += 1
            if not result.content.startswith(result.nonce):
                missing += 1
    seen: dict[str, int] = {}
    mixed = 0
    for result in results:
        if len(result.ids) > 1:
            mixed += 1
        for ident in result.ids:
            seen[ident] = seen.get(ident, 0) + 1
    shared_ids = sum(1 for count in seen.values() if count > 1)
    return {"foreign_marker": foreign, "missing_marker": missing, "shared_id": shared_ids, "mixed_ids": mixed}
