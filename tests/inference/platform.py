"""In-process drivers for the platform side of the worker network.

A worker program is played by the test over the real consumer (channels' WebsocketCommunicator
on the real routing and the Redis channel layer); HTTP requests go through the real ASGI
application. Everything runs on one event loop: wrap a scenario in `run(...)`.
"""

import asyncio
import json
import time
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator

from tests.support.factories import SMOLLM2


def worker_online(owner, name: str, *, slots: int = 1, models=(SMOLLM2,), channel: str | None = None):
    """A worker registered as if its socket had said hello (no socket: dispatch sends go nowhere)."""
    import uuid

    from inference.services import worker_register

    return worker_register(
        owner=owner,
        name=name,
        model_ids=list(models),
        slots=slots,
        engine="test",
        version="0",
        hardware={},
        channel_name=channel or f"test.worker.{uuid.uuid4().hex}",
    ).worker


def job_fields(user, *, model_id: str = SMOLLM2, reply_channel: str | None = None, token_type: str | None = "auto"):
    """A new job's fields as the chat view gives them to job_open."""
    import uuid

    from inference.models import LlmModel
    from inference.openai.responses import completion_id

    return {
        "user": user,
        "model": LlmModel.objects.get(id=model_id),
        "public_id": completion_id(),
        "request": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stream": True},
        "stream": True,
        "max_tokens": 16,
        "prompt_tokens_estimate": 10,
        "token_type": token_type,
        "reply_channel": reply_channel or f"test.reply.{uuid.uuid4().hex}",
    }


def job_queued(
    user,
    *,
    model_id: str = SMOLLM2,
    reply_channel: str | None = None,
    assign_now: bool = False,
    token_type: str | None = "auto",
):
    """A job written queued (no hold), dispatched after commit. With `assign_now`, opened as the chat
    view opens it (inference.services.opening): assigned to a free slot as it goes in, with its hold."""
    from accounts.models import User
    from inference.models import Job
    from inference.services.dispatch import dispatch_job_on_commit
    from inference.services.opening import job_open

    fields = job_fields(user, model_id=model_id, reply_channel=reply_channel, token_type=token_type)
    if assign_now:
        return job_open(**fields)
    if token_type is None:  # the account's default as of the insert
        token_type = User.objects.filter(pk=user.pk).values_list("default_token_type", flat=True).get() or "auto"
    job = Job.objects.create(**{**fields, "token_type": token_type})
    dispatch_job_on_commit(job.id)
    return job


def smollm2_count(text: str) -> int:
    """The platform's count of completion `text` for SmolLM2 (tests/inference/test_counting.py holds it to
    llama.cpp's own)."""
    from inference.counting import model_counter
    from inference.models import LlmModel

    return model_counter(LlmModel.objects.get(id=SMOLLM2)).count(text)


async def smollm2_prompt_count(request: dict) -> int:
    """The platform's count of job.request's prompt for SmolLM2, from async code."""
    from asgiref.sync import sync_to_async

    from inference.counting import model_counter
    from inference.models import LlmModel

    return await sync_to_async(lambda: model_counter(LlmModel.objects.get(id=SMOLLM2)).prompt(request))()


def run(scenario, *args, **kwargs):
    return async_to_sync(scenario)(*args, **kwargs)


def application():
    from sogni_platform.asgi import application

    return application


class WorkerSocket:
    """The test's side of one worker connection."""

    def __init__(self, key: str | None, *, headers: list | None = None):
        if headers is None:
            headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
        self.communicator = WebsocketCommunicator(application(), "/ws/worker/", headers=headers)
        self.welcome: dict | None = None

    async def connect(self) -> None:
        connected, _ = await self.communicator.connect(timeout=5)
        assert connected

    async def hello(self, *, name="gpu-1", models=(SMOLLM2,), slots=1, **extra) -> dict:
        await self.connect()
        frame = {
            "type": "hello",
            "protocol": 1,
            "worker_name": name,
            "models": list(models),
            "slots": slots,
            "engine": "test",
            "version": "0.0.1",
            "hardware": {"cpu": "test"},
            **extra,
        }
        await self.send(frame)
        self.welcome = await self.receive()
        assert self.welcome["type"] == "welcome", self.welcome
        return self.welcome

    async def send(self, frame: dict) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def send_text(self, text: str) -> None:
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def receive(self, timeout: float = 5) -> dict:
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def job(self, timeout: float = 5) -> dict:
        frame = await self.receive(timeout)
        assert frame["type"] == "job", frame
        return frame

    async def closed_with(self, timeout: float = 5) -> int:
        """The close code the platform chose (skipping frames sent before it)."""
        while True:
            message = await self.communicator.receive_output(timeout)
            if message["type"] == "websocket.close":
                return message.get("code", 1000)

    async def nothing(self, timeout: float = 0.3) -> bool:
        return await self.communicator.receive_nothing(timeout)

    async def delta(self, job_id: str, content: str, tokens: int = 1, **extra) -> None:
        await self.send({"type": "delta", "job_id": job_id, "content": content, "tokens": tokens, **extra})

    async def done(self, job_id: str, *, completion_tokens: int, prompt_tokens: int = 7, finish="stop") -> None:
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "reasoning_tokens": 0}
        await self.send({"type": "done", "job_id": job_id, "finish_reason": finish, "usage": usage})

    async def disconnect(self, code: int = 1006) -> None:
        """The socket went away (a killed worker): the platform's disconnect handling runs."""
        await self.communicator.disconnect(code=code, timeout=10)


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> dict:
        return json.loads(self.body)

    def events(self) -> list:
        """SSE data payloads in order: dicts, and the string "[DONE]"."""
        events = []
        for block in self.body.decode().split("\n\n"):
            if block.startswith("data: "):
                data = block[len("data: ") :]
                events.append(data if data == "[DONE]" else json.loads(data))
        return events

    def content(self) -> str:
        return "".join(
            choice["delta"].get("content") or ""
            for event in self.events()
            if isinstance(event, dict) and "choices" in event
            for choice in event["choices"]
        )


class HttpCall:
    """One HTTP request through the ASGI application, read as it streams."""

    def __init__(self, path: str, *, key: str | None, body: dict | bytes, method: str = "POST", headers=()):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = [(b"content-type", b"application/json"), (b"host", b"127.0.0.1"), *headers]
        if key:
            all_headers.append((b"authorization", f"Bearer {key}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": all_headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        self.communicator = ApplicationCommunicator(application(), scope)
        self.raw = raw
        self.reply: HttpReply | None = None
        self.finished = False

    async def start(self) -> HttpReply:
        await self.communicator.send_input({"type": "http.request", "body": self.raw, "more_body": False})
        start = await self.communicator.receive_output(30)
        assert start["type"] == "http.response.start", start
        headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
        self.reply = HttpReply(status=start["status"], headers=headers)
        return self.reply

    async def next_chunk(self, timeout: float = 30) -> bytes | None:
        """The next body chunk, or None at the end of the body."""
        if self.finished:
            return None
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "http.response.body", message
        chunk = message.get("body", b"")
        self.reply.chunks.append(chunk)
        if not message.get("more_body", False):
            self.finished = True
        return chunk

    async def read_until(self, needle: bytes, timeout: float = 30) -> None:
        while needle not in self.reply.body:
            assert await self.next_chunk(timeout) is not None, f"body ended without {needle!r}: {self.reply.body!r}"

    async def finish(self, timeout: float = 30) -> HttpReply:
        if self.reply is None:
            await self.start()
        while await self.next_chunk(timeout) is not None:
            pass
        await self.communicator.wait(timeout)
        return self.reply

    async def client_disconnects(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(10)


async def wait_for(predicate, *, timeout: float = 10, interval: float = 0.02):
    """Poll an async predicate (no timed assertion: only a ceiling for a broken build)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_until_blocked_by(pid: int) -> None:
    """Until some backend waits for a lock that backend `pid` holds (PostgreSQL)."""
    from django.db import connection

    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid])
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError(f"nothing waited for backend {pid}")
