"""Shared fixtures: the platform running for real (daphne + Celery) against the test database."""

import os
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlparse, urlunparse

import pytest

from tests.support.processes import Process, start_celery, start_daphne


@dataclass
class LivePlatform:
    url: str
    env: dict[str, str]
    daphne: Process
    celery: Process


def _test_database_url() -> str:
    from django.db import connection

    parsed = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(parsed._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture(scope="session")
def live_env(django_db_setup) -> dict[str, str]:
    """Environment for child processes: the test database, and a Celery queue and channel prefix of this run's own."""
    from django.conf import settings

    return {
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "CHANNEL_LAYER_PREFIX": settings.CHANNEL_LAYER_PREFIX,
        "DJANGO_DEBUG": "0",
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",  # emails land in the process's log
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def live_platform(live_env) -> LivePlatform:
    celery = start_celery(live_env)
    daphne = start_daphne(live_env)
    yield LivePlatform(url=daphne.extra["url"], env=live_env, daphne=daphne, celery=celery)
    daphne.stop()
    celery.stop()


@pytest.fixture
def two_daphnes(live_env):
    """Two more daphne processes on the test database and Redis, for what must hold across processes."""
    first = start_daphne(live_env)
    try:
        second = start_daphne(live_env)
    except Exception:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(autouse=True)
def _fast_password_hashing(request, settings):
    """Signup hashes a password per test and the default hasher is slow on purpose. Tests that start
    server processes (marked e2e) keep the default: those processes check the passwords the test sets."""
    if request.node.get_closest_marker("e2e") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db):
    """make(email=None, password=PASSWORD): a verified user (starter grant credited), through signup."""
    from tests.support.factories import PASSWORD, verified_signup

    counter = iter(range(10_000))

    def make(email: str | None = None, password: str = PASSWORD):
        return verified_signup(email=email or f"user{next(counter)}@example.com", password=password)

    return make


@pytest.fixture
def sogni_rate(db):
    """One SOGNI = $0.01 since 2020, for the whole test (transactional tests flush the seeded one)."""
    import datetime

    from billing.models import SogniRate

    SogniRate.objects.all().delete()
    return SogniRate.objects.create(
        usd_per_sogni=Decimal("0.01"), effective_from=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    )
