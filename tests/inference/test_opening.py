"""A chat request's job opened in one statement (PostgreSQL): the same rows the transaction path
writes, or — for anything but a free worker and a covering first wallet — nothing at all."""

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction

from accounts.models import User
from billing.models import Hold, LedgerEntry, Wallet
from billing.selectors import ledger_invariant_violations
from billing.services import job_hold, wallet_adjust
from inference.models import Job, LlmModel, Worker
from inference.relay import WORKER_JOB_ASSIGN, ReplyReader
from inference.services.jobs import job_insert
from inference.services.opening import job_open_at_once
from tests.inference.platform import job_unwritten, run, worker_online
from tests.support.factories import SMOLLM2

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement on PostgreSQL only")


def written(user) -> dict:
    """What an opening can write, for the customer and the workers."""
    return {
        "jobs": Job.objects.count(),
        "holds": list(Hold.objects.values_list("job_id", "amount")),
        "entries": LedgerEntry.objects.filter(wallet__user=user).count(),
        "wallets": list(Wallet.objects.filter(user=user).order_by("id").values_list("token_type", "balance", "held")),
        "in_flight": list(Worker.objects.order_by("id").values_list("in_flight", flat=True)),
    }


def test_a_free_worker_and_a_covering_wallet_open_the_job_in_one_statement_with_the_transaction_path_s_rows(
    platform, operator, customer, django_assert_num_queries
):
    model = LlmModel.objects.get(id=SMOLLM2)

    async def scenario():
        channel = await get_channel_layer().new_channel()
        worker = await sync_to_async(worker_online)(operator.user, "w", slots=2, channel=channel)
        reader = ReplyReader(channel)

        def open_job():
            job = job_unwritten(customer.user, token_type=None)
            with django_assert_num_queries(1):
                assert job_open_at_once(job, model=model, token_type="auto")
            return job

        job = await sync_to_async(open_job)()
        message = await reader.next(5)  # sent at once: there is no transaction to wait for
        await reader.close()
        return worker, job, message

    worker, job, message = run(scenario)
    assert (message["type"], message["job_id"]) == (WORKER_JOB_ASSIGN, str(job.id))
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.worker_id, stored.attempts, stored.token_type) == (
        Job.Status.ASSIGNED, worker.pk, 1, "auto")  # fmt: skip
    assert (job.status, job.worker_id, job.assigned_at, job.lease_expires_at) == (
        stored.status, stored.worker_id, stored.assigned_at, stored.lease_expires_at)  # fmt: skip

    # The transaction path, for the same request: the same hold and ledger entry.
    with transaction.atomic():
        other = job_insert(job_unwritten(customer.user, token_type=None), assign_now=True)
        job_hold(user=customer.user, job_id=str(other.id), model=model, prompt_tokens=10, max_tokens=16,
                 token_type=other.token_type, new_job=True)  # fmt: skip
    fields = ("wallet_id", "model_id", "status", "amount", "usd_estimate", "usd_per_token", "input_price_usd_per_m",
              "output_price_usd_per_m")  # fmt: skip
    one, two = (Hold.objects.values(*fields).get(job_id=str(j.id)) for j in (job, other))
    assert one == two and one["amount"] > 0
    one, two = (LedgerEntry.objects.values("kind", "amount", "held_change").get(job_id=str(j.id)) for j in (job, other))
    assert one == two == {"kind": "hold", "amount": 0, "held_change": two["held_change"]}
    assert Worker.objects.get(pk=worker.pk).in_flight == 2
    spark = Wallet.objects.get(user=customer.user, token_type="spark")
    assert spark.held == 2 * one["held_change"]
    assert ledger_invariant_violations() == []


@pytest.mark.parametrize("obstacle", ["no free worker", "wallet short", "default token type changed elsewhere"])
def test_anything_else_writes_nothing_and_leaves_the_job_to_the_transaction_path(
    platform, operator, customer, obstacle
):
    model = LlmModel.objects.get(id=SMOLLM2)
    worker = worker_online(operator.user, "w", slots=1)
    if obstacle == "no free worker":
        Worker.objects.filter(pk=worker.pk).update(in_flight=1)
    elif obstacle == "wallet short":  # an operator took the Spark away
        spark = Wallet.objects.get(user=customer.user, token_type="spark")
        wallet_adjust(wallet=spark, amount=-spark.balance, reason="test", operator=operator.user, key="drain")
    else:  # the caller's cached user still says auto: a slot is claimed, then undone with everything else
        User.objects.filter(pk=customer.user.pk).update(default_token_type="sogni")
    before = written(customer.user)

    job = job_unwritten(customer.user, token_type=None)
    assert not job_open_at_once(job, model=model, token_type="auto")

    assert written(customer.user) == before
    assert job._state.adding and job.status == Job.Status.QUEUED and job.token_type is None
    assert ledger_invariant_violations() == []


def test_inside_a_transaction_it_leaves_the_job_to_that_transaction(platform, operator, customer):
    worker_online(operator.user, "w", slots=1)
    with transaction.atomic():
        job = job_unwritten(customer.user, token_type=None)
        assert not job_open_at_once(job, model=LlmModel.objects.get(id=SMOLLM2), token_type="auto")
    assert Job.objects.count() == 0
