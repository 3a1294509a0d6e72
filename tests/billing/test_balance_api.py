"""GET /v1/account/balance with an API key."""

from decimal import Decimal

import pytest

from accounts.services import api_key_disable, api_key_reveal
from billing.models import Wallet
from billing.services.holds import hold_take
from inference.models import LlmModel

pytestmark = pytest.mark.django_db
URL = "/v1/account/balance"


def test_balance_lists_both_wallets_in_tokens_and_usd(client, make_user, catalog, sogni_rate):
    user = make_user()
    key = api_key_reveal(api_key=user.api_key, actor=user)
    model = LlmModel.objects.get(pk="qwen3.5-35b-a3b-gguf-q4km")
    hold_take(user=user, job_id="j", model=model, prompt_tokens=1000, max_tokens=1000, token_type="spark")

    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "account.balance"
    assert body["default_token_type"] == "auto"
    spark, sogni = body["data"]
    assert spark == {
        "object": "wallet",
        "token_type": "spark",
        "balance": "100",
        "held": "0.24",
        "available": "99.76",
        "usd_per_token": "0.005",
        "usd": {"balance": "0.5", "held": "0.0012", "available": "0.4988"},
    }
    assert (sogni["token_type"], sogni["available"], sogni["usd_per_token"]) == ("sogni", "0", "0.01")
    assert Decimal(spark["available"]) == Wallet.objects.get(user=user, token_type="spark").available


@pytest.mark.parametrize("case", ["missing", "disabled", "wrong"])
def test_balance_without_a_valid_key_is_401_openai_shaped(client, make_user, case):
    user = make_user()
    key = api_key_reveal(api_key=user.api_key, actor=user)
    headers = {}
    if case == "disabled":
        api_key_disable(api_key=user.api_key, actor=user, reason="test")
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    elif case == "wrong":
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key[:-4]}abcd"

    response = client.get(URL, **headers)

    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert "balance" not in response.content.decode()
