import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.selectors import api_key_authenticate
from accounts.services import api_key_disable, api_key_reveal, user_signup
from inference.models import LlmModel, Worker
from inference.openai.requests import parse_chat_request
from inference.services.workers import worker_disconnect, worker_register
from sogni_platform.exceptions import ApiError
from tests.support.openai_schema import validate

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    user = user_signup(email="m@example.com", password="correct horse battery")
    return api_key_reveal(api_key=user.api_key, actor=user)


def test_models_list_with_key(key):
    response = Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert "smollm2-135m-instruct-q4_1" in ids


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer sk-sogni-AAAAAAAAAAAA-" + "b" * 40])
def test_models_list_rejects_missing_or_bad_key(header):
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().get("/v1/models", **kwargs)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_disabled_key_gets_401(key):
    api_key_disable(api_key=api_key_authenticate(key), actor=None)
    response = Client().get("/v1/models", HTTP_API_KEY=key)
    assert response.status_code == 401


def test_unknown_model_is_404(key):
    response = Client().get("/v1/models/nope", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


# --- OpenAI shape plus our fields -------------------------------------------------------------------


def _get(key, path):
    response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {key}")
    return response.status_code, response.json()


def test_models_list_conforms_to_the_spec(key):
    status, body = _get(key, "/v1/models")
    assert status == 200
    validate("ListModelsResponse", body)
    for model in body["data"]:
        validate("Model", model)


def test_model_detail_conforms_and_matches_the_list(key):
    _, listing = _get(key, "/v1/models")
    for model in listing["data"]:
        status, detail = _get(key, f"/v1/models/{model['id']}")
        assert status == 200
        validate("Model", detail)
        assert detail == model


def test_unknown_model_error_conforms(key):
    status, body = _get(key, "/v1/models/gpt-4o")
    assert status == 404
    validate("ErrorResponse", body)
    assert body["error"]["param"] == "model"


def test_each_model_says_whether_its_tokens_are_counted_exactly(key):
    """The embedded SmolLM2 is counted with its own GGUF; a model without a tokenizer is bounded."""
    _, listing = _get(key, "/v1/models")
    counting = {model["id"]: model["token_counting"] for model in listing["data"]}
    assert counting["smollm2-135m-instruct-q4_1"] == "exact"
    assert counting["qwen3.5-35b-a3b-gguf-q4km"] == "bounded"


def test_catalog_fields_prices_and_capabilities(key):
    status, model = _get(key, "/v1/models/qwen3.5-35b-a3b-gguf-q4km")
    assert status == 200
    assert model["display_name"] == "Qwen3.5 35B A3B (GGUF Q4_K_M)"
    assert (model["context_window"], model["max_output_tokens"]) == (32768, 8192)
    # $0.30 / $0.90 per 1M tokens; 1 Spark = $0.005, so 60 and 180 Spark per 1M.
    assert model["pricing"] == {
        "input_usd_per_1m": "0.30",
        "output_usd_per_1m": "0.90",
        "input_spark_per_1m": "60",
        "output_spark_per_1m": "180",
        "spark_usd": "0.005",
    }
    assert model["capabilities"] == {
        "tools": True,
        "reasoning": True,
        "json": True,
        "logprobs": False,
        "completions": False,
    }
    _, small = _get(key, "/v1/models/smollm2-135m-instruct-q4_1")
    assert small["capabilities"]["reasoning"] is False


def test_prices_are_exact_decimal_strings(key):
    LlmModel.objects.filter(id="smollm2-135m-instruct-q4_1").update(
        input_price_usd_per_m=Decimal("0.123457"), output_price_usd_per_m=Decimal("12")
    )
    _, model = _get(key, "/v1/models/smollm2-135m-instruct-q4_1")
    assert model["pricing"]["input_usd_per_1m"] == "0.123457"
    assert model["pricing"]["input_spark_per_1m"] == "24.6914"
    assert model["pricing"]["output_usd_per_1m"] == "12.00"
    assert model["pricing"]["output_spark_per_1m"] == "2400"


def test_sampling_limits_follow_the_model(key):
    _, model = _get(key, "/v1/models/smollm2-135m-instruct-q4_1")
    sampling = model["sampling"]
    assert sampling["limits"]["max_tokens"] == {"minimum": 1, "maximum": 1024}
    assert sampling["defaults"]["max_tokens"] == 1024
    assert sampling["limits"]["temperature"] == {"minimum": 0, "maximum": 2}
    assert sampling["limits"]["stop"] == {"max_items": 4}
    assert set(sampling["defaults"]) >= {"temperature", "top_p", "top_k", "min_p", "repetition_penalty"}


def test_temperature_limit_published_is_the_one_enforced(key):
    _, model = _get(key, "/v1/models/smollm2-135m-instruct-q4_1")
    maximum = model["sampling"]["limits"]["temperature"]["maximum"]
    body = {"messages": [{"role": "user", "content": "hi"}]}
    parse_chat_request(
        json.dumps({**body, "temperature": maximum}).encode(), content_type="application/json", headers={}
    )
    with pytest.raises(ApiError):
        parse_chat_request(
            json.dumps({**body, "temperature": maximum + 0.01}).encode(), content_type="application/json", headers={}
        )


def test_online_workers_and_status(key):
    owner = User.objects.get(email="m@example.com")
    _, before = _get(key, "/v1/models/smollm2-135m-instruct-q4_1")
    assert (before["online_workers"], before["status"]) == (0, "offline")
    registrations = [
        worker_register(
            owner=owner,
            name=f"gpu-{i}",
            model_ids=["smollm2-135m-instruct-q4_1"],
            slots=1,
            engine="llama-cpp",
            version="0.1.0",
            hardware={},
            channel_name=f"test.chan{i}",
        )
        for i in range(2)
    ]
    _, listing = _get(key, "/v1/models")
    by_id = {m["id"]: m for m in listing["data"]}
    assert (by_id["smollm2-135m-instruct-q4_1"]["online_workers"], by_id["smollm2-135m-instruct-q4_1"]["status"]) == (
        2,
        "online",
    )
    assert by_id["qwen3.5-35b-a3b-gguf-q4km"]["status"] == "offline"
    worker_disconnect(worker_id=registrations[0].worker.pk, channel_name="test.chan0", delivered={})
    _, after = _get(key, "/v1/models/smollm2-135m-instruct-q4_1")
    assert (after["online_workers"], after["status"]) == (1, "online")
    Worker.objects.filter(pk=registrations[1].worker.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    _, stale = _get(key, "/v1/models/smollm2-135m-instruct-q4_1")
    assert (stale["online_workers"], stale["status"]) == (0, "offline")


def test_default_model_is_marked(key, settings):
    settings.EMBEDDED = False
    _, listing = _get(key, "/v1/models")
    assert [m["id"] for m in listing["data"] if m["default"]] == ["qwen3.5-35b-a3b-gguf-q4km"]
    settings.EMBEDDED = True
    _, listing = _get(key, "/v1/models")
    assert [m["id"] for m in listing["data"] if m["default"]] == ["smollm2-135m-instruct-q4_1"]


def test_list_puts_the_default_first_then_online_models_then_offline(key, settings):
    """UIs pre-select the first model: it must be one a first message can reach."""
    owner = User.objects.get(email="m@example.com")
    settings.EMBEDDED = False
    _, listing = _get(key, "/v1/models")
    ids = [m["id"] for m in listing["data"]]
    assert ids[0] == "qwen3.5-35b-a3b-gguf-q4km"  # the default, offline
    # SmolLM2 comes online: it moves ahead of the offline abliterated model, behind the default.
    worker_register(
        owner=owner,
        name="cpu-1",
        model_ids=["smollm2-135m-instruct-q4_1"],
        slots=1,
        engine="llama-cpp",
        version="0.1.0",
        hardware={},
        channel_name="test.order",
    )
    _, listing = _get(key, "/v1/models")
    assert [(m["id"], m["default"], m["status"]) for m in listing["data"]] == [
        ("qwen3.5-35b-a3b-gguf-q4km", True, "offline"),
        ("smollm2-135m-instruct-q4_1", False, "online"),
        ("qwen3.5-35b-a3b-abliterated-gguf-q4km", False, "offline"),
    ]
    settings.EMBEDDED = True  # the embedded default, online, first
    _, listing = _get(key, "/v1/models")
    assert [m["id"] for m in listing["data"]][0] == "smollm2-135m-instruct-q4_1"
    validate("ListModelsResponse", listing)


def test_each_model_has_a_name_for_uis(key):
    _, listing = _get(key, "/v1/models")
    for model in listing["data"]:
        assert model["name"] == model["display_name"] != model["id"]
