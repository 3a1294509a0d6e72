"""Operators see workers and jobs in the admin and can ban a worker."""

import uuid

import pytest
from django.test import Client

from accounts.models import User
from inference.models import LlmModel, Worker
from inference.services import job_create, worker_register
from tests.inference.platform import SMOLLM2


@pytest.fixture
def admin_client(catalog):
    User.objects.create_superuser("admin@example.com", "admin-password-123")
    client = Client()
    assert client.login(username="admin@example.com", password="admin-password-123")
    return client


def test_workers_and_jobs_pages_and_the_ban_action(admin_client, eager_celery, customer, operator):
    worker = worker_register(
        owner=operator.user,
        name="box",
        model_ids=[SMOLLM2],
        slots=2,
        engine="test",
        version="0",
        hardware={"cpu": "x"},
        channel_name=f"test.worker.{uuid.uuid4().hex}",
    ).worker
    job = job_create(
        user=customer.user,
        model=LlmModel.objects.get(id=SMOLLM2),
        public_id="chatcmpl-admin-test",
        request={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        stream=False,
        max_tokens=4,
        prompt_tokens_estimate=5,
        token_type="auto",
        reply_channel="test.reply",
    )
    for url in (
        "/admin/inference/worker/",
        f"/admin/inference/worker/{worker.pk}/change/",
        "/admin/inference/job/",
        f"/admin/inference/job/{job.pk}/change/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert b"chatcmpl-admin-test" in admin_client.get("/admin/inference/job/").content

    response = admin_client.post(
        "/admin/inference/worker/", {"action": "ban", "_selected_action": [worker.pk]}, follow=True
    )
    assert response.status_code == 200
    assert Worker.objects.get(pk=worker.pk).status == Worker.Status.BANNED
