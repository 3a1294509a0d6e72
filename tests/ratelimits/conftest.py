import pytest

from accounts.services import api_key_reveal
from tests.support.factories import verified_signup


@pytest.fixture
def account():
    """A new account and its raw API key."""

    def make(email: str = "limits@example.com"):
        user = verified_signup(email=email)
        return user, api_key_reveal(api_key=user.api_key, actor=user)

    return make
