"""GET /v1/generation?id=<chatcmpl id>: one request's stats, to its owner only, errors in OpenAI's shape."""

import datetime

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_reveal
from inference.models import Job, Worker
from tests.support.factories import SMOLLM2
from tests.usage.factories import job_make, worker_make

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_reveal(api_key=user.api_key, actor=user)}")
    return client


@pytest.fixture
def alice(catalog, make_user):
    return make_user("alice@example.com")


def test_owner_gets_tokens_cost_latency_ttft_and_finish_reason(alice, sogni_rate, make_user):
    worker = worker_make(owner=make_user("op@example.com"), status=Worker.Status.ONLINE)
    at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    job = job_make(
        user=alice, at=at, prompt=100, completion=200, reasoning=20, worker=worker, ttft_ms=300, generation_ms=2000
    )

    response = _client(alice).get("/v1/generation", {"id": job.public_id})

    assert response.status_code == 200, response.content
    assert response.json() == {
        "object": "generation",
        "id": job.public_id,
        "model": SMOLLM2,
        "status": "completed",
        "created": int(at.timestamp()),
        "usage": {"prompt_tokens": 100, "completion_tokens": 200, "total_tokens": 300, "reasoning_tokens": 20},
        # 100 × $0.30/1M + 200 × $0.90/1M = $0.00021 = 0.042 Spark.
        "cost": {"token_type": "spark", "amount": "0.042", "usd": "0.00021"},
        "latency_ms": 2300,
        "ttft_ms": 300,
        "queue_ms": 50,
        "generation_ms": 2000,
        "finish_reason": "stop",
        "cancelled": False,
        "error": None,
    }


def test_a_cancelled_request_says_so_and_pays_only_what_was_delivered(alice):
    job = job_make(
        user=alice,
        prompt=10,
        completion=4,
        status=Job.Status.CANCELLED,
        error_code="cancelled",
        error_message="The client went away.",
    )
    body = _client(alice).get("/v1/generation", {"id": job.public_id}).json()
    assert body["cancelled"] is True
    assert body["status"] == "cancelled"
    assert body["finish_reason"] is None
    assert body["error"] == {"code": "cancelled", "message": "The client went away."}
    # 10 × $0.30/1M + 4 × $0.90/1M = $0.0000066 = 0.00132 Spark.
    assert body["cost"] == {"token_type": "spark", "amount": "0.00132", "usd": "0.0000066"}


def test_a_hold_keyed_by_the_job_uuid_is_found_too(alice):
    job = job_make(user=alice, prompt=100, completion=200, hold_key="uuid")
    assert _client(alice).get("/v1/generation", {"id": job.public_id}).json()["cost"]["amount"] == "0.042"


def test_a_request_still_running_has_no_cost_yet(alice):
    job = job_make(user=alice, status=Job.Status.QUEUED, settle=False)
    body = _client(alice).get("/v1/generation", {"id": job.public_id}).json()
    assert body["status"] == "queued"
    assert body["cost"] is None and body["latency_ms"] is None and body["ttft_ms"] is None


def _assert_error(response, status: int, *, param, code) -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"]) == (param, code)
    assert error["message"]


def test_someone_elses_id_is_indistinguishable_from_an_unknown_one(alice, make_user):
    bob = make_user("bob@example.com")
    job = job_make(user=alice, prompt=1, completion=1)
    _assert_error(_client(bob).get("/v1/generation", {"id": job.public_id}), 404, param="id", code="not_found")
    _assert_error(_client(bob).get("/v1/generation", {"id": "chatcmpl-nope"}), 404, param="id", code="not_found")


@pytest.mark.parametrize("odd", ["x" * 5000, "chatcmpl-\x00", "' OR 1=1 --", "🙂"])
def test_odd_ids_are_404_never_500(alice, odd):
    _assert_error(_client(alice).get("/v1/generation", {"id": odd}), 404, param="id", code="not_found")


@pytest.mark.parametrize("query", [{}, {"id": ""}])
def test_missing_id_is_400_naming_the_param(alice, query):
    response = _client(alice).get("/v1/generation", query)
    _assert_error(response, 400, param="id", code="missing_required_parameter")


def test_without_a_key_it_is_401(alice):
    job = job_make(user=alice, prompt=1, completion=1)
    response = APIClient().get("/v1/generation", {"id": job.public_id})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
