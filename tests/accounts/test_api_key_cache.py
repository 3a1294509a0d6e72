"""A chat request's API key row: read once per API_KEY_CACHE_SECONDS per process, anew at once after a
change saved in the same process; the secret is checked on every call. Other callers read it each time."""

import time

import pytest

from accounts.models import ApiKey, User
from accounts.selectors import api_key_authenticate
from accounts.services import api_key_disable, api_key_regenerate, api_key_reveal, user_signup
from ratelimits.models import AccountLimits

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_and_key():
    user = user_signup(email="cache@example.com", password="correct horse battery")
    return user, api_key_reveal(api_key=user.api_key, actor=user)


def test_a_key_is_read_once_and_its_secret_checked_every_time(user_and_key, django_assert_num_queries):
    user, raw = user_and_key
    assert api_key_authenticate(raw, cached=True).user == user
    with django_assert_num_queries(0):
        assert api_key_authenticate(raw, cached=True).user == user
        assert api_key_authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B"), cached=True) is None
    with django_assert_num_queries(1):
        assert api_key_authenticate(raw).user == user  # not a chat request: read anew


@pytest.mark.parametrize("change", ["disable", "regenerate", "deactivate", "limits"])
def test_a_change_saved_in_this_process_applies_to_the_next_call(user_and_key, change):
    user, raw = user_and_key
    assert api_key_authenticate(raw, cached=True) is not None
    if change == "disable":
        api_key_disable(api_key=user.api_key, actor=user)
    elif change == "regenerate":
        api_key_regenerate(api_key=user.api_key, actor=user)
    elif change == "deactivate":
        user.is_active = False
        user.save(update_fields=["is_active"])
    else:
        AccountLimits.objects.create(user=user, requests_per_minute=3)
        assert api_key_authenticate(raw, cached=True).user.rate_limits.requests_per_minute == 3
        return
    assert api_key_authenticate(raw, cached=True) is None


def test_a_key_disabled_by_another_process_is_refused_within_the_cache_time(user_and_key, settings):
    settings.API_KEY_CACHE_SECONDS = 0.3
    user, raw = user_and_key
    assert api_key_authenticate(raw, cached=True) is not None
    ApiKey.objects.filter(user=user).update(is_enabled=False)  # no signal: another process's write
    assert api_key_authenticate(raw, cached=True) is not None
    assert api_key_authenticate(raw) is None
    time.sleep(0.35)
    assert api_key_authenticate(raw, cached=True) is None


def test_with_no_cache_time_every_call_reads_the_key(user_and_key, settings, django_assert_num_queries):
    settings.API_KEY_CACHE_SECONDS = 0
    user, raw = user_and_key
    for _ in range(2):
        with django_assert_num_queries(1):
            assert api_key_authenticate(raw, cached=True).user == user
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert api_key_authenticate(raw, cached=True) is None
