"""The limit is one budget across daphne processes: they share the window in Redis."""

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_limit_holds_across_two_daphne_processes(two_daphnes, account):
    _, key = account()
    urls = [process.extra["url"] for process in two_daphnes]
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=10) as client:
        for i in range(60):
            response = client.get(f"{urls[i % 2]}/v1/models", headers=headers)
            assert response.status_code == 200, response.text
            # Each process sees the other's requests: remaining counts down the combined total.
            assert response.headers["x-ratelimit-remaining-requests"] == str(59 - i)
        for url in urls:
            refused = client.get(f"{url}/v1/models", headers=headers)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            assert refused.json()["error"]["type"] == "requests"
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
