"""Every end of a job settles or releases its hold (inference/services/jobs.py `job_end`), on the
platform's counts of what was relayed, capped by what the hold was taken for."""

from decimal import Decimal

import pytest

from tests.billing.invariants import ledger_invariants  # noqa: F401  (autouse)
from tests.inference.platform import worker_online
from tests.support.factories import SMOLLM2, account_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(db):
    from inference.catalog import catalog_seed
    from inference.models import Worker

    catalog_seed()
    # A worker of the model is online but busy: a job opens queued, with its hold.
    worker = worker_online(account_create(email="owner@example.com").user, "busy", slots=1)
    Worker.objects.filter(pk=worker.pk).update(in_flight=1)
    return account_create(email="payer@example.com").user


def open_job(user, *, max_tokens=10, prompt_tokens_estimate=100):
    """A chat request's job opened as the chat view opens it: queued (no free worker) with its hold."""
    from inference.models import LlmModel
    from inference.services.opening import job_open

    return job_open(
        user=user,
        model=LlmModel.objects.get(id=SMOLLM2),
        public_id=f"chatcmpl-{user.pk}-{max_tokens}-{prompt_tokens_estimate}",
        request={},
        stream=False,
        max_tokens=max_tokens,
        prompt_tokens_estimate=prompt_tokens_estimate,
        token_type="spark",
        reply_channel="reply.test",
    )


def running(job, channel="worker.test"):
    from inference.models import Job

    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, worker_channel=channel)


def kinds(job) -> dict:
    from billing.models import LedgerEntry

    return {e.kind: e.amount for e in LedgerEntry.objects.filter(job_id=str(job.id))}


def spark(user) -> tuple[Decimal, Decimal]:
    wallet = user.wallets.get(token_type="spark")
    return wallet.balance, wallet.held


def test_a_worker_over_reporting_the_prompt_is_charged_at_most_the_holds_bound(user):
    from inference.services import job_complete

    job = open_job(user, max_tokens=10, prompt_tokens_estimate=100)
    running(job)
    finished = job_complete(
        job_id=job.id, channel_name="worker.test", finish_reason="stop", prompt_tokens=5000, completion_tokens=10,
        reasoning_tokens=0, output=" word" * 20,
    )  # fmt: skip
    assert finished.prompt_tokens == 100
    # 20 tokens relayed, billed at most max_tokens.
    assert (finished.completion_tokens, finished.claimed_completion_tokens) == (10, 10)
    # (100 × $0.30 + 10 × $0.90) / 1M = $0.000039 = 0.0078 Spark: the whole hold, nothing released.
    assert kinds(job) == {"hold": Decimal(0), "charge": Decimal("-0.0078")}
    assert spark(user) == (Decimal(100) - Decimal("0.0078"), Decimal(0))


def test_a_job_expiring_in_the_queue_releases_its_hold(user):
    from inference.services import job_expire

    job = open_job(user)
    assert job_expire(job_id=job.id)
    assert set(kinds(job)) == {"hold", "release"}
    assert spark(user) == (Decimal(100), Decimal(0))


def test_a_job_cancelled_in_the_queue_releases_its_hold(user):
    from inference.services import job_cancel

    job = open_job(user)
    assert job_cancel(job_id=job.id) is None
    assert set(kinds(job)) == {"hold", "release"}
    assert spark(user) == (Decimal(100), Decimal(0))


def test_a_job_failing_after_max_attempts_releases_its_hold(user, settings):
    from inference.models import Job
    from inference.services import job_requeue

    settings.JOB_MAX_ATTEMPTS = 1
    job = open_job(user)
    running(job)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.ASSIGNED, attempts=1)
    job_requeue(job_id=job.id, channel_name="worker.test", reason="boom")
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert set(kinds(job)) == {"hold", "release"}
    assert spark(user) == (Decimal(100), Decimal(0))


def test_a_failure_after_delivery_charges_the_delivered_tokens_without_a_prompt(user):
    from inference.services import job_fail

    job = open_job(user, max_tokens=10)
    running(job)
    job_fail(job_id=job.id, channel_name="worker.test", code="engine_error", message="oom", completion_tokens=50,
             output=" word" * 50)  # fmt: skip
    # Capped at max_tokens: 10 × $0.90 / 1M = $0.000009 = 0.0018 Spark.
    assert kinds(job)["charge"] == Decimal("-0.0018")
    assert spark(user) == (Decimal(100) - Decimal("0.0018"), Decimal(0))
