"""A chat request's job opens in one statement (PostgreSQL) with the same rows the transaction path
writes; for anything but a free worker and a covering first wallet, the statement writes nothing and
the transaction path opens the job."""

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction

from accounts.models import User
from billing.models import Hold, LedgerEntry, SogniRate, Wallet
from billing.selectors import ledger_invariant_violations
from billing.services.adjustments import wallet_adjust
from inference.models import Job, Worker
from inference.relay import WORKER_JOB_ASSIGN, ReplyReader
from inference.services.opening import job_open
from tests.inference.platform import job_fields, run, worker_online

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement on PostgreSQL only")


def test_a_free_worker_and_a_covering_wallet_open_the_job_in_one_statement_with_the_transaction_path_s_rows(
    platform, operator, customer, django_assert_num_queries
):

    async def scenario():
        channel = await get_channel_layer().new_channel()
        worker = await sync_to_async(worker_online)(operator.user, "w", slots=2, channel=channel)
        reader = ReplyReader(channel)

        def open_job():
            fields = job_fields(customer.user, token_type=None)
            with django_assert_num_queries(1):
                return job_open(**fields)

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
        other = job_open(**job_fields(customer.user, token_type=None))
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
def test_anything_else_writes_nothing_in_the_statement_and_opens_the_job_in_a_transaction(
    platform, operator, customer, obstacle
):
    worker = worker_online(operator.user, "w", slots=1)
    SogniRate.objects.create(usd_per_sogni=Decimal("0.02"))
    if obstacle == "no free worker":
        Worker.objects.filter(pk=worker.pk).update(in_flight=1)
    elif obstacle == "wallet short":  # an operator took the Spark away; SOGNI pays
        spark = Wallet.objects.get(user=customer.user, token_type="spark")
        wallet_adjust(wallet=spark, amount=-spark.balance, reason="test", operator=operator.user, key="drain")
        sogni = Wallet.objects.get(user=customer.user, token_type="sogni")
        wallet_adjust(wallet=sogni, amount=Decimal(100), reason="test", operator=operator.user, key="fill")
    else:  # the caller's cached user still says auto: the statement undoes its slot claim
        User.objects.filter(pk=customer.user.pk).update(default_token_type="sogni")
        sogni = Wallet.objects.get(user=customer.user, token_type="sogni")
        wallet_adjust(wallet=sogni, amount=Decimal(100), reason="test", operator=operator.user, key="fill")

    job = job_open(**job_fields(customer.user, token_type=None))

    stored = Job.objects.get(pk=job.pk)
    hold = Hold.objects.select_related("wallet").get(job_id=str(job.id))
    if obstacle == "no free worker":
        assert (stored.status, hold.wallet.token_type) == (Job.Status.QUEUED, "spark")
    else:
        assert (stored.status, stored.worker_id, hold.wallet.token_type) == (Job.Status.ASSIGNED, worker.pk, "sogni")
    assert Worker.objects.get(pk=worker.pk).in_flight == 1
    assert ledger_invariant_violations() == []


def test_inside_a_transaction_the_job_opens_in_it_and_goes_with_its_rollback(platform, operator, customer):
    worker = worker_online(operator.user, "w", slots=1)
    before = Hold.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        job = job_open(**job_fields(customer.user))
        assert Job.objects.get(pk=job.pk).status == Job.Status.ASSIGNED
        raise RuntimeError("the caller's transaction fails")
    assert (Job.objects.count(), Hold.objects.count(), Worker.objects.get(pk=worker.pk).in_flight) == (0, before, 0)


@pytest.mark.parametrize(
    ("statement", "model"),
    [
        ("JOB_OPEN_SQL", "inference.Job"),
        ("JOB_OPEN_SQL", "billing.Hold"),
        ("JOB_OPEN_SQL", "billing.LedgerEntry"),
        ("HOLD_TAKE_SQL", "billing.Hold"),
        ("HOLD_TAKE_SQL", "billing.LedgerEntry"),
    ],
)
def test_the_opening_statements_write_every_column_of_their_rows(statement, model):
    """A column added to a job, a hold or a ledger entry must be written by the statements that insert
    them whole (its default would otherwise be missing on PostgreSQL's fast path only)."""
    import re

    from django.apps import apps

    from billing.services import holds
    from inference.services import opening

    sql = getattr(opening, statement, None) or getattr(holds, statement)
    meta = apps.get_model(model)._meta
    columns = re.search(rf"INSERT INTO {meta.db_table} \(([^)]*)\)", sql).group(1)
    written = {column.strip() for column in columns.split(",")}
    assert written == {field.column for field in meta.concrete_fields if field is not meta.auto_field}
