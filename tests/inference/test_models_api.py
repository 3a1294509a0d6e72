import pytest
from django.test import Client

from accounts.selectors import api_key_authenticate
from accounts.services import api_key_disable, api_key_reveal, user_signup

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
