"""A minimal OpenAI-compatible HTTP/1.1 server over an engine: the benchmarks' "engine alone" baseline.

Plain asyncio, no web framework: GET /v1/models, POST /v1/chat/completions (streaming or not).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
import uuid
from typing import Any

from .engines.base import Engine, EngineError, Finish
from .streaming import Generation, merge

log = logging.getLogger("sogni_worker.serve")
MAX_BODY = 8 * 1024 * 1024
_STATUS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_ERROR_STATUS = {"invalid_request": 400, "context_length_exceeded": 400, "overloaded": 503}


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _error_body(message: str, code: str | None, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _tool_call_delta(fragment: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"index": fragment["index"], "function": {"arguments": fragment.get("arguments", "")}}
    if fragment.get("id"):
        out.update(id=fragment["id"], type="function")
    if fragment.get("name"):
        out["function"]["name"] = fragment["name"]
    return out


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: OpenAIServer) -> None:
        self.reader, self.writer, self.server = reader, writer, server

    async def _read_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        line = await self.reader.readline()
        if not line.strip():
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            raise _HttpError(413, "request body too large")
        body = await self.reader.readexactly(length) if length else b""
        return method, path.split("?", 1)[0], headers, body

    def _head(self, status: int, content_type: str, extra: str) -> None:
        self.writer.write(
            f"HTTP/1.1 {status} {_STATUS.get(status, 'OK')}\r\nContent-Type: {content_type}\r\n{extra}\r\n".encode()
        )

    async def send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self._head(status, "application/json", f"Content-Length: {len(data)}\r\n")
        self.writer.write(data)
        await self.writer.drain()

    async def run(self) -> None:
        try:
            while True:
                try:
                    request = await self._read_request()
                    if request is None:
                        return
                    method, path, headers, body = request
                    await self.server.route(self, method, path, body)
                except _HttpError as exc:
                    await self.send_json(exc.status, _error_body(exc.message, exc.code, exc.status))
                    return
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self.writer.close()


class OpenAIServer:
    def __init__(self, engine: Engine, *, model_name: str, slots: int) -> None:
        self.engine = engine
        self.model_name = model_name
        self.slots = asyncio.Semaphore(slots)

    async def route(self, conn: _Connection, method: str, path: str, body: bytes) -> None:
        if path in ("/v1/models", "/models") and method == "GET":
            model = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "sogni-worker"}
            await conn.send_json(200, {"object": "list", "data": [model]})
        elif path in ("/v1/chat/completions", "/chat/completions"):
            if method != "POST":
                raise _HttpError(405, "use POST")
            await self.chat(conn, body)
        else:
            raise _HttpError(404, f"no route {method} {path}", "not_found")

    async def chat(self, conn: _Connection, body: bytes) -> None:
        try:
            request = json.loads(body)
        except ValueError:
            raise _HttpError(400, "the body is not valid JSON") from None
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list) or not request["messages"]:
            raise _HttpError(400, "messages must be a non-empty array")
        request.setdefault("max_tokens", request.get("max_completion_tokens") or 256)
        stream = bool(request.get("stream"))
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": ident, "created": created, "model": self.model_name}
        cancel = threading.Event()
        async with self.slots:
            generation = Generation(self.engine, request, cancel, name="serve")
            try:
                if stream:
                    await self._stream(conn, generation, base, include_usage)
                else:
                    await self._collect(conn, generation, base)
            finally:
                cancel.set()

    async def _stream(self, conn: _Connection, generation: Generation, base: dict, include_usage: bool) -> None:
        conn._head(200, "text/event-stream", "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n")

        async def event(payload: dict[str, Any] | str) -> None:
            data = f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()
            conn.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await conn.writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        await event(chunk({"role": "assistant", "content": ""}))
        try:
            while True:
                item = await generation.get()
                if isinstance(item, Finish):
                    await event(chunk({}, item.finish_reason))
                    if include_usage:
                        await event({**base, "object": "chat.completion.chunk", "choices": [], "usage": _usage(item)})
                    break
                delta: dict[str, Any] = {}
                if item.content:
                    delta["content"] = item.content
                if item.reasoning:
                    delta["reasoning_content"] = item.reasoning
                if item.tool_calls:
                    delta["tool_calls"] = [_tool_call_delta(f) for f in item.tool_calls]
                await event(chunk(delta))
        except EngineError as exc:
            status = _ERROR_STATUS.get(exc.code, 500)
            await event(_error_body(exc.message, exc.code, status))
        await event("[DONE]")
        conn.writer.write(b"0\r\n\r\n")
        await conn.writer.drain()

    async def _collect(self, conn: _Connection, generation: Generation, base: dict) -> None:
        deltas = []
        try:
            while not isinstance(item := await generation.get(), Finish):
                deltas.append(item)
        except EngineError as exc:
            status = _ERROR_STATUS.get(exc.code, 500)
            await conn.send_json(status, _error_body(exc.message, exc.code, status))
            return
        merged = merge(deltas)
        message: dict[str, Any] = {"role": "assistant", "content": merged.content or None}
        if merged.reasoning:
            message["reasoning_content"] = merged.reasoning
        if merged.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f.get("id", ""),
                    "type": "function",
                    "function": {"name": f.get("name", ""), "arguments": f.get("arguments", "")},
                }
                for f in merged.tool_calls
            ]
        choice = {"index": 0, "message": message, "finish_reason": item.finish_reason}
        await conn.send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": _usage(item)})


def _usage(finish: Finish) -> dict[str, Any]:
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": finish.reasoning_tokens},
    }


async def serve(engine: Engine, *, host: str, port: int, model_name: str, slots: int) -> None:
    app = OpenAIServer(engine, model_name=model_name, slots=slots)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(lambda r, w: _Connection(r, w, app).run(), host, port)
    log.info("serving %s at http://%s:%d/v1 (%s engine)", model_name, host, port, engine.name)
    async with server:
        await stop.wait()
    log.info("stopped")
