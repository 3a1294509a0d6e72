"""A test-local WebSocket server speaking the platform side of docs/worker-protocol.md.

Used only for worker behaviours that need a peer we can steer (close codes, drops, timing); the
end-to-end tests against the real platform live in tests/e2e/.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


@dataclass
class PeerConnection:
    ws: ServerConnection
    headers: dict[str, str]
    opened_at: float
    frames: list[dict[str, Any]] = field(default_factory=list)  # a `deltas` frame's deltas, one by one
    batches: list[list[dict[str, Any]]] = field(default_factory=list)  # each `deltas` frame's deltas
    closed_at: float | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in list(self.frames) if f.get("type") == kind]

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        return [f for f in list(self.frames) if f.get("job_id") == job_id]


class PlatformPeer:
    """reject_with: close code sent right after the handshake (4001 = bad key) or after hello.
    features: announced in the welcome (the platform's are inference.protocol.FEATURES)."""

    def __init__(
        self,
        *,
        heartbeat_interval: float = 0.5,
        reject_with: int | None = None,
        known_models: list[str] | None = None,
        features: tuple[str, ...] = (),
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.features = features
        self.reject_with = reject_with
        self.known_models = known_models  # None: every model the worker offers
        self.connections: list[PeerConnection] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)
        self.url = f"ws://127.0.0.1:{self.port}"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            async with serve(self._handler, "127.0.0.1", 0) as server:
                self.port = server.sockets[0].getsockname()[1]
                started.set()
                await self._stop.wait()

        self.loop.run_until_complete(main())

    async def _handler(self, ws: ServerConnection) -> None:
        conn = PeerConnection(ws=ws, headers=dict(ws.request.headers), opened_at=time.monotonic())
        self.connections.append(conn)
        if self.reject_with is not None:  # like the platform on a bad key: accept, then close at once
            await ws.close(self.reject_with, "rejected by the test peer")
            conn.closed_at = time.monotonic()
            return
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "deltas":
                    conn.batches.append(frame["deltas"])
                    conn.frames.extend(frame["deltas"])
                else:
                    conn.frames.append(frame)
                if frame.get("type") == "hello":
                    known = self.known_models
                    accepted = [m for m in frame["models"] if known is None or m in known]
                    await ws.send(
                        json.dumps({
                            "type": "welcome", "protocol": 1, "worker_id": f"w{len(self.connections)}",
                            "heartbeat_interval": self.heartbeat_interval, "models": accepted,
                            "rejected_models": [m for m in frame["models"] if m not in accepted],
                            "features": list(self.features),
                        })
                    )  # fmt: skip
        except ConnectionClosed:
            pass
        finally:
            conn.closed_at = time.monotonic()

    def _call(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def send(self, conn: PeerConnection, message: dict[str, Any]) -> None:
        self._call(conn.ws.send(json.dumps(message)))

    def close(self, conn: PeerConnection, code: int = 1012, reason: str = "") -> None:
        self._call(conn.ws.close(code, reason))

    def job(self, conn: PeerConnection, job_id: str, text: str, **request: Any) -> None:
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": 64, "stream": True, **request}
        self.send(conn, {"type": "job", "job_id": job_id, "model": "test-model", "request": body})

    def welcomed(self) -> list[PeerConnection]:
        return [c for c in self.connections if c.of_type("hello")]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


def wait_for(condition, timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or condition}")
