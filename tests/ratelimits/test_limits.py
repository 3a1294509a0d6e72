"""Per-key limits through the HTTP API: the 61st request in a minute is refused, OpenAI-shaped."""

import pytest
from asgiref.sync import async_to_sync
from django.test import Client, override_settings

from accounts.selectors import api_key_authenticate
from ratelimits.services import (
    account_limits_set,
    ratelimit_check_request_async,
    ratelimit_consume_tokens,
)
from sogni_platform.exceptions import ApiError

pytestmark = pytest.mark.django_db


_client = Client()


def get_models(key: str):
    return _client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}")


def assert_rate_limited(response, kind: str):
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["type"] == kind
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert "Please try again in" in error["message"] or "Request too large" in error["message"]
    assert 1 <= int(response["Retry-After"]) <= 60


def test_61st_request_in_a_minute_gets_429_with_retry_after(account):
    _, key = account()
    remaining = []
    for _ in range(60):
        response = get_models(key)
        assert response.status_code == 200
        assert response["x-ratelimit-limit-requests"] == "60"
        remaining.append(int(response["x-ratelimit-remaining-requests"]))
    assert remaining == list(range(59, -1, -1))

    refused = get_models(key)
    assert_rate_limited(refused, "requests")
    assert refused["x-ratelimit-remaining-requests"] == "0"
    assert refused["x-ratelimit-limit-requests"] == "60"
    assert refused["x-ratelimit-reset-requests"].endswith("s")
    assert "x-request-id" in refused
    assert "Limit 60, Used 60" in refused.json()["error"]["message"]


def test_limit_is_per_key(account):
    user_a, key_a = account("a@example.com")
    _, key_b = account("b@example.com")
    account_limits_set(user=user_a, requests_per_minute=2, tokens_per_minute=None)
    assert get_models(key_a).status_code == 200
    assert get_models(key_a).status_code == 200
    assert_rate_limited(get_models(key_a), "requests")
    assert get_models(key_b).status_code == 200


def test_operator_override_lowers_and_raises_the_limit(account):
    user, key = account()
    account_limits_set(user=user, requests_per_minute=3, tokens_per_minute=None)
    for _ in range(3):
        assert get_models(key).status_code == 200
    assert_rate_limited(get_models(key), "requests")
    # Raised: the refused request was not counted, so two more fit under 5.
    account_limits_set(user=user, requests_per_minute=5, tokens_per_minute=None)
    assert get_models(key)["x-ratelimit-remaining-requests"] == "1"
    assert get_models(key).status_code == 200
    assert_rate_limited(get_models(key), "requests")
    # 0 means no limit for this account.
    account_limits_set(user=user, requests_per_minute=0, tokens_per_minute=0)
    response = get_models(key)
    assert response.status_code == 200
    assert "x-ratelimit-limit-requests" not in response


def test_tokens_per_minute_refuses_once_used_up(account):
    user, key = account()
    account_limits_set(user=user, requests_per_minute=None, tokens_per_minute=1000)
    response = get_models(key)
    assert response["x-ratelimit-limit-tokens"] == "1000"
    assert response["x-ratelimit-remaining-tokens"] == "1000"
    ratelimit_consume_tokens(user_id=user.id, tokens=400)
    assert get_models(key)["x-ratelimit-remaining-tokens"] == "600"
    ratelimit_consume_tokens(user_id=user.id, tokens=600)
    refused = get_models(key)
    assert_rate_limited(refused, "tokens")
    assert "tokens per min (TPM): Limit 1000, Used 1000" in refused.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
def test_async_check_for_the_chat_view_counts_in_the_same_window(account):
    user, key = account()
    account_limits_set(user=user, requests_per_minute=3, tokens_per_minute=500)
    api_key = api_key_authenticate(key)
    assert get_models(key).status_code == 200

    async def two_checks():
        first = await ratelimit_check_request_async(api_key=api_key, tokens=100)
        second = await ratelimit_check_request_async(api_key=api_key, tokens=100)
        return first, second

    first, second = async_to_sync(two_checks)()
    assert first.headers()["x-ratelimit-remaining-requests"] == "1"
    assert second.headers()["x-ratelimit-remaining-requests"] == "0"
    assert_rate_limited(get_models(key), "requests")

    # An estimate larger than the whole TPM budget can never fit.
    with pytest.raises(ApiError) as excinfo:
        async_to_sync(ratelimit_check_request_async)(api_key=api_key, tokens=501)
    assert excinfo.value.status == 429
    assert excinfo.value.type == "tokens"
    assert "Request too large" in excinfo.value.message


@override_settings(REDIS_URL=None)
def test_embedded_mode_limits_in_process(account):
    user, key = account()
    account_limits_set(user=user, requests_per_minute=2, tokens_per_minute=None)
    assert get_models(key).status_code == 200
    assert get_models(key).status_code == 200
    assert_rate_limited(get_models(key), "requests")


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_unreachable_redis_lets_requests_through(account):
    user, key = account()
    account_limits_set(user=user, requests_per_minute=1, tokens_per_minute=None)
    for _ in range(3):
        response = get_models(key)
        assert response.status_code == 200
        assert "x-ratelimit-limit-requests" not in response


def test_operator_sets_a_limit_in_the_admin_and_it_applies(account):
    from accounts.models import User

    user, key = account()
    staff = User.objects.create_superuser("limits-ops@example.com", "correct horse battery")
    admin = Client()
    admin.force_login(staff)
    assert admin.get("/admin/ratelimits/accountlimits/add/").status_code == 200
    response = admin.post(
        "/admin/ratelimits/accountlimits/add/",
        {"user": user.pk, "requests_per_minute": "1", "tokens_per_minute": "", "note": "abuse report"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert user.email in admin.get("/admin/ratelimits/accountlimits/").content.decode()
    assert get_models(key).status_code == 200
    assert_rate_limited(get_models(key), "requests")
