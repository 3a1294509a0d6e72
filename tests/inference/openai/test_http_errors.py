"""Malformed requests through the real POST /v1/chat/completions view: the right 4xx, OpenAI-shaped,
an x-request-id, and nothing moved (no job, no ledger entry, no hold)."""

import json

import pytest
from django.test import Client

from billing.models import Hold, LedgerEntry
from inference.models import Job
from tests.inference.openai.test_requests_invalid import CASES
from tests.support.factories import account_create
from tests.support.openai_schema import validate

# Committed rows: the view reads the key in a pool thread of its own, as it does in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key():
    return account_create(email="bad-requests@example.com").key


def _post(key, raw, content_type="application/json"):
    counts = (Job.objects.count(), LedgerEntry.objects.count(), Hold.objects.count())
    response = Client().generic(
        "POST", "/v1/chat/completions", raw, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    body = json.loads(response.content)
    validate("ErrorResponse", body)
    assert response["x-request-id"]
    assert (Job.objects.count(), LedgerEntry.objects.count(), Hold.objects.count()) == counts
    return response.status_code, body["error"]


@pytest.mark.parametrize(("case_body", "param", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request_over_http(key, case_body, param, code):
    status, error = _post(key, json.dumps(case_body).encode())
    assert (status, error["type"], error["param"], error["code"]) == (400, "invalid_request_error", param, code)


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "Hi"}]}', "text/plain", 415, "unsupported_media_type"),
        (b"messages=Hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
    ids=["truncated-json", "array-body", "text-plain", "form"],
)
def test_unparseable_request_over_http(key, raw, content_type, status, code):
    response_status, error = _post(key, raw, content_type)
    assert (response_status, error["code"]) == (status, code)


def test_unknown_model_over_http(key):
    status, error = _post(key, json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}))
    assert (status, error["param"], error["code"]) == (404, "model", "model_not_found")
