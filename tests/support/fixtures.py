"""Shared fixtures: the platform running for real (daphne + Celery) against the test database."""

import os
from dataclasses import dataclass
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
