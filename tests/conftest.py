import uuid

import pytest

from tests.support.services import missing_services

pytest_plugins = ["tests.support.fixtures", "tests.support.workers", "tests.support.browser"]


def pytest_sessionstart(session):
    problems = missing_services()
    if problems:
        pytest.exit("\n".join(problems), returncode=2)


def pytest_configure(config):
    """Give this run a Celery queue and channel prefix of its own, so runs sharing a Redis stay apart."""
    from django.conf import settings

    from sogni_platform.celery import app

    run_id = f"test-{uuid.uuid4().hex[:8]}"
    settings.CHANNEL_LAYER_PREFIX = f"sogni-{run_id}"
    if "CONFIG" in settings.CHANNEL_LAYERS["default"]:
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = settings.CHANNEL_LAYER_PREFIX
    settings.CELERY_TASK_DEFAULT_QUEUE = f"sogni-{run_id}"
    app.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE


@pytest.fixture(autouse=True)
def cached_rows_read_anew():
    """Each test's database starts over (flushed or rolled back without signals): nothing a chat
    request resolved (model, API key) in an earlier test's database is reused."""
    from accounts.selectors import api_keys_found_forget
    from inference.selectors import models_resolved_forget

    models_resolved_forget()
    api_keys_found_forget()
