"""Shared test factories: accounts made through the real signup service, and the seeded models' ids.

Imports of the platform happen inside the functions: pytest plugins (tests/support/*.py) import this
module before Django is set up."""

from typing import NamedTuple

PASSWORD = "correct horse battery staple"
SMOLLM2 = "smollm2-135m-instruct-q4_1"
QWEN = "qwen3.5-35b-a3b-gguf-q4km"


class Account(NamedTuple):
    user: object
    key: str


def verified_signup(*, email: str, password: str = PASSWORD):
    """A user made through the signup service who opened the verification link: starter grant credited."""
    from accounts.services import user_signup
    from billing.services.grants import account_verify

    user = user_signup(email=email, password=password)
    account_verify(user=user)
    user.refresh_from_db()
    return user


def account_create(*, email: str, password: str = PASSWORD) -> Account:
    """A verified account and its raw API key (signup creates the key); unpacks as `user, key`."""
    from accounts.services import api_key_reveal

    user = verified_signup(email=email, password=password)
    return Account(user=user, key=api_key_reveal(api_key=user.api_key, actor=user))


# Two function tools for requests that offer tools (string lengths bounded so small models finish a call).
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 20}},
            "required": ["zone"],
        },
    },
}
