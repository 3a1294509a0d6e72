import pytest

from accounts.keys import parse_key
from accounts.selectors import api_key_authenticate, api_key_from_headers
from accounts.services import api_key_disable, api_key_regenerate, api_key_reveal, user_signup

pytestmark = pytest.mark.django_db


def test_signup_creates_a_key_that_authenticates_and_reveals():
    user = user_signup(email="Ada@Example.com", password="correct horse battery")
    raw = api_key_reveal(api_key=user.api_key, actor=user)
    assert parse_key(raw) is not None
    assert api_key_authenticate(raw).user == user
    assert user.email == "ada@example.com"


def test_regenerated_key_replaces_old_one_and_disabled_key_fails():
    user = user_signup(email="bob@example.com", password="correct horse battery")
    old = api_key_reveal(api_key=user.api_key, actor=user)
    new = api_key_regenerate(api_key=user.api_key, actor=user)
    assert api_key_authenticate(old) is None
    assert api_key_authenticate(new).user == user
    api_key_disable(api_key=user.api_key, actor=user)
    assert api_key_authenticate(new) is None


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({"authorization": "Bearer sk-x"}, "sk-x"),
        ({"Authorization": "bearer  sk-y "}, "sk-y"),
        ({"api-key": "sk-z"}, "sk-z"),
        ({"authorization": "Basic abc"}, None),
        ({}, None),
    ],
)
def test_key_is_read_from_bearer_or_legacy_header(headers, expected):
    assert api_key_from_headers(headers) == expected
