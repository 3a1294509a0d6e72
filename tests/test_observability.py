"""Request ids, structured logs and /metrics, through the test client and a real daphne."""

import contextvars
import io
import json
import logging
import re

import httpx
import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from accounts.services import api_key_reveal, user_signup
from sogni_platform.logging import PLAIN_FORMAT, RequestIdFilter, request_id_var
from sogni_platform.metrics import (
    metrics_count_tokens,
    metrics_gauge_register,
    metrics_observe_ttft,
    metrics_record_job,
)
from tests.support.factories import verified_signup
from tests.support.processes import start_daphne, wait_until
from tests.support.workers import catalog, operator, workers  # noqa: F401 - fixtures

METRICS_TOKEN = "test-metrics-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# Request ids ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "incoming,echoed",
    [
        (None, False),
        ("client-id_1.2", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("has space", False),
        ("semi;colon", False),
        ("", False),
    ],
)
def test_request_id_is_echoed_when_valid_else_made(incoming, echoed):
    headers = {"HTTP_X_REQUEST_ID": incoming} if incoming is not None else {}
    response = Client().get("/v1/models", **headers)  # 401: errors carry the id too
    assert response.status_code == 401
    if echoed:
        assert response["x-request-id"] == incoming
    else:
        assert re.fullmatch(r"req_[0-9a-f]{24}", response["x-request-id"])


def test_plain_log_lines_carry_the_request_id():
    # A fresh context: outside any request, whatever this test thread served before.
    contextvars.Context().run(_log_inside_and_outside_a_request)


def _log_inside_and_outside_a_request():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    log = logging.getLogger("tests.observability.plain")
    log.addHandler(handler)
    log.propagate = False
    try:
        token = request_id_var.set("req_plain1")
        log.warning("inside")
        request_id_var.reset(token)
        log.warning("outside")
    finally:
        log.removeHandler(handler)
    inside, outside = stream.getvalue().splitlines()
    assert "[req_plain1]" in inside and inside.endswith("inside")
    assert "[-]" in outside


# A real daphne with JSON logs and a metrics token ------------------------------------------------


@pytest.fixture(scope="module")
def json_daphne(live_env):
    process = start_daphne({**live_env, "LOG_FORMAT": "json", "METRICS_TOKEN": METRICS_TOKEN})
    yield process
    process.stop()


def log_entries(process) -> list[dict]:
    entries = []
    for line in process.log().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


@pytest.mark.e2e
def test_json_logs_over_daphne_carry_the_request_id(json_daphne):
    url = json_daphne.extra["url"]
    given = httpx.get(f"{url}/v1/models", headers={"x-request-id": "obs-json.1"}, timeout=10)
    made = httpx.get(f"{url}/healthz", timeout=10)  # an async view
    assert given.status_code == 401 and given.headers["x-request-id"] == "obs-json.1"
    assert made.status_code == 200 and made.headers["x-request-id"].startswith("req_")

    entries = log_entries(json_daphne)
    mine = [entry for entry in entries if entry["request_id"] == "obs-json.1"]
    # The access line and Django's own "Unauthorized" warning: two loggers, one id.
    assert {entry["logger"] for entry in mine} >= {"sogni.request", "django.request"}
    access = next(entry for entry in mine if entry["logger"] == "sogni.request")
    assert access["status"] == 401 and access["path"] == "/v1/models" and access["method"] == "GET"
    assert {"ts", "level", "message", "duration_ms"} <= access.keys()
    assert any(entry["request_id"] == made.headers["x-request-id"] for entry in entries)


# /metrics -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_refuses_anonymous_users_and_wrong_tokens():
    client = Client()
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}").status_code == 200
    # No token configured: no bearer value opens it.
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}").status_code == 401

    user = user_signup(email="not-staff@example.com", password="correct horse battery")
    client.force_login(user)
    forbidden = client.get("/metrics")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["type"] == "permission_error"


@pytest.mark.django_db
def test_operator_session_reads_metrics_and_gauges_are_computed_at_scrape():
    staff = User.objects.create_superuser("ops@example.com", "correct horse battery")
    client = Client()
    client.force_login(staff)
    metrics_gauge_register(
        name="sogni_test_accounts",
        documentation="Accounts (test gauge).",
        callback=lambda: [((), float(User.objects.count()))],
    )
    first = client.get("/metrics")
    assert first.status_code == 200
    assert first["Content-Type"].startswith("text/plain; version=")
    before = samples(first.content.decode())[("sogni_test_accounts", ())]
    user_signup(email="one-more@example.com", password="correct horse battery")
    after = samples(client.get("/metrics").content.decode())[("sogni_test_accounts", ())]
    assert after == before + 1
    text = client.get("/metrics").content.decode()
    for family in ("sogni_queue_depth", "sogni_workers_online", "sogni_holds_open", "sogni_http_requests_total"):
        assert f"# TYPE {family.removesuffix('_total')}" in text


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_metrics_count_across_processes(json_daphne):
    user = verified_signup(email="metrics@example.com")
    key = api_key_reveal(api_key=user.api_key, actor=user)
    url = json_daphne.extra["url"]
    scrape_headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}

    def scrape():
        response = httpx.get(f"{url}/metrics", headers=scrape_headers, timeout=10)
        assert response.status_code == 200
        return samples(response.text)

    ok = ("sogni_http_requests_total", (("method", "GET"), ("route", "v1/models"), ("status", "200")))
    unauthorized = ("sogni_http_errors_total", (("status", "401"),))
    model = "obs-model-x"
    before = scrape()
    for _ in range(3):
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
    # Recorded in this (test) process, served by daphne: counters live in Redis, not in a process.
    metrics_record_job(model=model, outcome="completed", ttft_seconds=0.3, prompt_tokens=10, completion_tokens=30)
    metrics_observe_ttft(model=model, seconds=4.0)
    metrics_count_tokens(model=model, prompt=2, completion=4)
    after = scrape()

    assert after[ok] - before.get(ok, 0) == 3
    assert after[unauthorized] - before.get(unauthorized, 0) >= 1
    labels = (("model", model),)
    assert after[("sogni_ttft_seconds_bucket", (("le", "0.25"), *labels))] == 0
    assert after[("sogni_ttft_seconds_bucket", (("le", "0.5"), *labels))] == 1
    assert after[("sogni_ttft_seconds_bucket", (("le", "5.0"), *labels))] == 2
    assert after[("sogni_ttft_seconds_bucket", (("le", "+Inf"), *labels))] == 2
    assert after[("sogni_ttft_seconds_count", labels)] == 2
    assert after[("sogni_ttft_seconds_sum", labels)] == pytest.approx(4.3)
    assert after[("sogni_tokens_total", (("kind", "prompt"), *labels))] == 12
    assert after[("sogni_tokens_total", (("kind", "completion"), *labels))] == 34
    assert after[("sogni_jobs_total", (("model", model), ("outcome", "completed")))] == 1


@pytest.mark.django_db
def test_unknown_api_paths_get_openai_shaped_404s():
    response = Client().get("/v1/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (GET /v1/no/such/thing)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert response["x-request-id"].startswith("req_")
    page = Client().get("/no-such-page")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


@pytest.mark.e2e
def test_celery_tasks_log_the_request_id_of_the_request_that_queued_them(live_platform):
    from inference.tasks import dispatch_queued_task

    request_id = "req_celery_propagation_1"
    context = contextvars.copy_context()
    context.run(request_id_var.set, request_id)
    context.run(dispatch_queued_task.delay, model_id="no-such-model")
    wait_until(
        lambda: any(request_id in line and "succeeded" in line for line in live_platform.celery.log().splitlines()),
        timeout=30,
        what="the task's log line with the request id",
    )


@pytest.mark.e2e
def test_workers_online_gauge_counts_a_connected_worker(workers):  # noqa: F811 - the imported fixture
    staff = User.objects.create_superuser("gauge-ops@example.com", "correct horse battery")
    client = Client()
    client.force_login(staff)

    def online() -> float:
        return samples(client.get("/metrics").content.decode())[("sogni_workers_online", ())]

    assert online() == 0
    workers.start("gauge-scripted", engine="scripted", extra=["--scripted-rate", "0"])
    assert online() == 1


@pytest.mark.django_db
@override_settings(REDIS_URL=None)
def test_embedded_mode_counts_in_process():
    staff = User.objects.create_superuser("embedded-ops@example.com", "correct horse battery")
    client = Client()
    client.force_login(staff)
    key = ("sogni_http_requests_total", (("method", "GET"), ("route", "healthz"), ("status", "200")))
    before = samples(client.get("/metrics").content.decode()).get(key, 0)
    assert client.get("/healthz").status_code == 200
    assert samples(client.get("/metrics").content.decode())[key] == before + 1


@pytest.mark.django_db
def test_holds_open_gauge_follows_billing_holds():
    from billing.services.holds import hold_release, hold_take
    from inference.models import LlmModel

    model = LlmModel.objects.get(id="smollm2-135m-instruct-q4_1")
    staff = User.objects.create_superuser("holds-ops@example.com", "correct horse battery")
    client = Client()
    client.force_login(staff)
    user = verified_signup(email="holder@example.com")
    key = ("sogni_holds_open", (("model", model.id),))

    def holds() -> float:
        return samples(client.get("/metrics").content.decode()).get(key, 0)

    assert holds() == 0
    hold_take(user=user, job_id="job-gauge-1", model=model, prompt_tokens=10, max_tokens=10, token_type="spark")
    hold_take(user=user, job_id="job-gauge-2", model=model, prompt_tokens=10, max_tokens=10, token_type="spark")
    assert holds() == 2
    hold_release(job_id="job-gauge-1")
    assert holds() == 1


def test_middleware_async_path_sets_the_id_for_the_view_and_the_response():
    """The async branch (used when every middleware below it is async-capable)."""
    from asgiref.sync import async_to_sync, iscoroutinefunction
    from django.http import HttpResponse
    from django.test import RequestFactory

    from sogni_platform.middleware import RequestIdMiddleware

    seen = {}

    async def view(request):
        seen["id"] = request_id_var.get()
        return HttpResponse("ok")

    middleware = RequestIdMiddleware(view)
    assert iscoroutinefunction(middleware)
    request = RequestFactory().get("/healthz", HTTP_X_REQUEST_ID="async-path.1")
    response = contextvars.Context().run(async_to_sync(middleware), request)
    assert response["x-request-id"] == "async-path.1"
    assert seen["id"] == "async-path.1"
