"""Fixtures for the platform side of the worker network: the catalog, accounts, and Celery run
eagerly (the embedded mode's configuration) so dispatch happens in-process."""

import pytest

from tests.support.factories import account_create


@pytest.fixture
def eager_celery(settings):
    from sogni_platform.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    settings.CELERY_TASK_ALWAYS_EAGER = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def platform(catalog, eager_celery, settings):
    """Short timeouts so tests that wait for them stay quick."""
    settings.JOB_QUEUE_TIMEOUT = 2
    settings.SSE_KEEPALIVE_SECONDS = 0.2
    settings.STREAM_HEADERS_WAIT_SECONDS = 0.2
    return settings


@pytest.fixture
def operator(catalog):
    return account_create(email="operator@example.com")


@pytest.fixture
def customer(catalog):
    return account_create(email="customer@example.com")
