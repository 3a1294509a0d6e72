"""Operators see workers and jobs in the admin and can ban a worker."""

import uuid

import pytest
from django.test import Client

from accounts.models import User
from inference.models import Job, LlmModel, Worker
from inference.services import worker_register
from tests.support.factories import SMOLLM2


@pytest.fixture
def admin_client(catalog):
    User.objects.create_superuser("admin@example.com", "admin-password-123")
    client = Client()
    assert client.login(username="admin@example.com", password="admin-password-123")
    return client


def worker_box(owner) -> Worker:
    return worker_register(
        owner=owner,
        name="box",
        model_ids=[SMOLLM2],
        slots=2,
        engine="test",
        version="0",
        hardware={"cpu": "x"},
        channel_name=f"test.worker.{uuid.uuid4().hex}",
    ).worker


def test_workers_and_jobs_pages_and_the_ban_action(admin_client, eager_celery, customer, operator):
    worker = worker_box(operator.user)
    job = Job.objects.create(
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


@pytest.mark.parametrize("action", ["ban", "unban", "unpause"])
def test_worker_actions_need_the_change_worker_permission(catalog, eager_celery, operator, action):
    from django.contrib.auth.models import Permission
    from django.utils import timezone

    from inference.services import worker_ban

    worker = worker_box(operator.user)
    if action == "unban":
        worker_ban(worker=worker)
    if action == "unpause":
        Worker.objects.filter(pk=worker.pk).update(paused_until=timezone.now() + timezone.timedelta(hours=1))
    before = Worker.objects.values("status", "paused_until").get(pk=worker.pk)
    staff = User.objects.create_user("staff@example.com", "staff-password-123", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_worker"))
    client = Client()
    assert client.login(username="staff@example.com", password="staff-password-123")
    post = {"action": action, "_selected_action": [worker.pk]}

    # Allowed to look, not to act: the action is not offered and a posted one changes nothing.
    page = client.get("/admin/inference/worker/")
    assert page.status_code == 200 and f'value="{action}"'.encode() not in page.content
    client.post("/admin/inference/worker/", post, follow=True)
    assert Worker.objects.values("status", "paused_until").get(pk=worker.pk) == before

    staff.user_permissions.add(Permission.objects.get(codename="change_worker"))
    client.post("/admin/inference/worker/", post, follow=True)
    after = Worker.objects.values("status", "paused_until").get(pk=worker.pk)
    expected = {
        "ban": lambda row: row["status"] == Worker.Status.BANNED,
        "unban": lambda row: row["status"] != Worker.Status.BANNED,
        "unpause": lambda row: row["paused_until"] is None,
    }[action]
    assert expected(after) and not expected(before), (before, after)
