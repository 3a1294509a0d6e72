"""CORS on /v1/*: a browser app on another origin may call the API with its key; the dashboard stays
same-origin. Through the real ASGI application and socket consumer."""

import asyncio

from tests.inference.platform import SMOLLM2, HttpCall, WorkerSocket, run

ORIGIN = "http://localhost:3000"


def preflight(path: str, *, origin: str = ORIGIN, headers: str = "authorization, content-type") -> HttpCall:
    return HttpCall(
        path,
        key=None,
        body=b"",
        method="OPTIONS",
        headers=[
            (b"origin", origin.encode()),
            (b"access-control-request-method", b"POST"),
            (b"access-control-request-headers", headers.encode()),
        ],
    )


def test_preflight_from_another_origin_is_answered_with_the_allow_headers(platform):
    reply = run(preflight("/v1/chat/completions", headers="authorization, content-type, x-stainless-os").finish)
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == "*"
    assert "POST" in reply.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-stainless-os"} <= allowed
    # Other /v1 routes (served by the full middleware stack) answer preflights the same way.
    models = run(preflight("/v1/models").finish)
    assert (models.status, models.headers["access-control-allow-origin"]) == (204, "*")


def test_a_streamed_reply_and_an_error_carry_the_allow_origin_header(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        call = HttpCall("/v1/chat/completions", key=customer.key, body=body, headers=[(b"origin", ORIGIN.encode())])
        pending = asyncio.ensure_future(call.start())
        job = await worker.job()
        await worker.delta(job["job_id"], "Hello")
        reply = await pending
        await worker.done(job["job_id"], completion_tokens=1)
        await call.finish()
        unauthorised = HttpCall("/v1/chat/completions", key="nope", body=body, headers=[(b"origin", ORIGIN.encode())])
        refused = await unauthorised.finish()
        await worker.disconnect()
        return reply, refused

    reply, refused = run(scenario)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["access-control-allow-origin"] == "*"
    assert reply.content() == "Hello"
    assert refused.status == 401
    assert refused.headers["access-control-allow-origin"] == "*"  # the page can read why


def test_only_the_configured_origins_are_allowed(platform, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    allowed = run(preflight("/v1/chat/completions", origin="https://app.example.com").finish)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "origin" in allowed.headers["vary"].lower()
    other = run(preflight("/v1/chat/completions").finish)
    assert "access-control-allow-origin" not in other.headers  # the browser refuses the call


def test_the_dashboard_stays_same_origin(platform):
    call = HttpCall("/login/", key=None, body=b"", method="GET", headers=[(b"origin", ORIGIN.encode())])
    reply = run(call.finish)
    assert reply.status == 200
    assert not [name for name in reply.headers if name.startswith("access-control-")]
    dashboard = run(preflight("/dashboard/api-key/reveal").finish)
    assert not [name for name in dashboard.headers if name.startswith("access-control-")]
