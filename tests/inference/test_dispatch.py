"""Dispatch on PostgreSQL: least loaded first, never more jobs than slots, only eligible workers."""

import contextlib
import random
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from billing.models import SogniRate
from billing.services.adjustments import wallet_adjust
from billing.services.ledger import wallets_ensure
from inference.models import Job, LlmModel, Worker
from inference.relay import WORKER_JOB_ASSIGN, ReplyReader
from inference.services import (
    job_complete,
    job_dispatch,
    jobs_dispatch_queued,
    worker_set_draining,
)
from tests.inference.platform import backend_pid, job_queued, run, wait_until_blocked_by, worker_online
from tests.support.factories import QWEN, SMOLLM2


@contextlib.contextmanager
def worker_row_held(worker: Worker, *, seconds: float):
    """Another transaction holds the worker's row (a slot claim or release in progress) for `seconds`
    after the block starts; yields the event set when it lets go."""
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        try:
            with transaction.atomic():
                Worker.objects.select_for_update().get(pk=worker.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(10)
    threading.Timer(seconds, release.set).start()
    try:
        yield release
    finally:
        holder.join(10)


def assigned_to(job: Job) -> str | None:
    job.refresh_from_db()
    return job.worker.name if job.status == Job.Status.ASSIGNED else None


def test_least_loaded_worker_first_within_its_slots(platform, operator, customer):
    async def scenario():
        layer = get_channel_layer()
        channels = {name: await layer.new_channel() for name in ("w1", "w2")}
        for name, channel in channels.items():
            await sync_to_async(worker_online)(operator.user, name, slots=2, channel=channel)
        jobs = [await sync_to_async(job_queued)(customer.user) for _ in range(5)]
        received = {}
        for name, channel in channels.items():
            reader = ReplyReader(channel)
            messages = [await reader.next(5) for _ in range(2)]
            assert {message["type"] for message in messages} == {WORKER_JOB_ASSIGN}
            received[name] = [message["job_id"] for message in messages]
            assert await reader.next(0.2) is None
            await reader.close()
        return jobs, received

    jobs, received = run(scenario)
    placement = [assigned_to(job) for job in jobs]
    # Ties go to the worker that waited longest, so the load alternates; the fifth job waits.
    assert placement == ["w1", "w2", "w1", "w2", None]
    assert received == {"w1": [str(jobs[0].id), str(jobs[2].id)], "w2": [str(jobs[1].id), str(jobs[3].id)]}
    assert jobs[4].status == Job.Status.QUEUED
    assert list(Worker.objects.order_by("name").values_list("in_flight", flat=True)) == [2, 2]

    # A slot frees up: the waiting job goes there.
    w1 = Worker.objects.get(name="w1")
    job_complete(
        job_id=jobs[0].id,
        channel_name=w1.channel_name,
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=2,
        reasoning_tokens=0,
    )
    assert assigned_to(jobs[4]) == "w1"
    assert Worker.objects.get(name="w1").in_flight == 2


def test_the_job_goes_to_the_worker_with_the_fewest_jobs(platform, operator, customer):
    busy = worker_online(operator.user, "busy", slots=4)
    for _ in range(2):
        job_queued(customer.user)
    idle = worker_online(operator.user, "idle", slots=1)
    assert (Worker.objects.get(pk=busy.pk).in_flight, Worker.objects.get(pk=idle.pk).in_flight) == (2, 0)
    assert assigned_to(job_queued(customer.user)) == "idle"
    assert assigned_to(job_queued(customer.user)) == "busy"


def test_dispatch_only_uses_workers_that_can_take_the_job(platform, operator, customer):
    draining = worker_online(operator.user, "draining", slots=4)
    worker_set_draining(worker_id=draining.pk, channel_name=draining.channel_name)
    stale = worker_online(operator.user, "stale", slots=4)
    Worker.objects.filter(pk=stale.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
    worker_online(operator.user, "other-model", slots=4, models=[QWEN])
    banned = worker_online(operator.user, "banned", slots=4)
    Worker.objects.filter(pk=banned.pk).update(status=Worker.Status.BANNED)

    job = job_queued(customer.user)
    assert assigned_to(job) is None
    assert not job_dispatch(job_id=job.id)

    worker_online(operator.user, "fresh", slots=1)  # connecting dispatches what waits for its models
    assert assigned_to(job) == "fresh"


def test_only_the_holding_connection_can_finish_a_job(platform, operator, customer):
    worker = worker_online(operator.user, "w", slots=1)
    job = job_queued(customer.user)
    finish = dict(finish_reason="stop", prompt_tokens=1, completion_tokens=1, reasoning_tokens=0)
    assert job_complete(job_id=job.id, channel_name="test.someone-else", **finish) is None
    job.refresh_from_db()
    assert job.status == Job.Status.ASSIGNED
    assert job_complete(job_id=job.id, channel_name=worker.channel_name, **finish) is not None
    # Finishing twice changes nothing (and frees the slot once).
    assert job_complete(job_id=job.id, channel_name=worker.channel_name, **finish) is None
    assert Worker.objects.get().in_flight == 0


def test_in_flight_cannot_exceed_slots(platform, operator):
    worker = worker_online(operator.user, "w", slots=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Worker.objects.filter(pk=worker.pk).update(in_flight=F("slots") + 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Worker.objects.filter(pk=worker.pk).update(in_flight=-1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_dispatch_never_overfills_a_worker(platform, operator, customer):
    slots = {"one": 1, "two": 2, "three": 3}
    # Registered for another model first, so the queue builds up with nobody to take it.
    workers = [worker_online(operator.user, name, slots=n, models=[QWEN]) for name, n in slots.items()]
    jobs = [job_queued(customer.user) for _ in range(20)]
    assert Job.objects.filter(status=Job.Status.QUEUED).count() == 20
    smollm2 = LlmModel.objects.get(id=SMOLLM2)
    for worker in workers:
        worker.served_models.add(smollm2)

    barrier = threading.Barrier(8)
    errors = []

    def race(index: int) -> None:
        try:
            barrier.wait(10)
            if index % 2:
                jobs_dispatch_queued(model_id=SMOLLM2)
            else:
                for job in random.sample(jobs, len(jobs)):
                    job_dispatch(job_id=job.id)
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assigned = Job.objects.filter(status=Job.Status.ASSIGNED)
    assert assigned.count() == sum(slots.values())
    assert Job.objects.filter(status=Job.Status.QUEUED).count() == 20 - sum(slots.values())
    for worker in Worker.objects.all():
        assert worker.in_flight == slots[worker.name]
        assert assigned.filter(worker=worker).count() == slots[worker.name]
    assert all(job.attempts == 1 for job in assigned)


def test_a_job_opened_in_a_transaction_goes_in_already_assigned_to_the_best_free_worker(
    platform, operator, customer, settings
):
    """The opening's transaction path: the slot is claimed before the insert, and the worker is told
    after commit; with no free worker the job goes in queued, for Celery to dispatch."""

    async def scenario():
        channel = await get_channel_layer().new_channel()
        worker = await sync_to_async(worker_online)(operator.user, "w", slots=1, channel=channel)

        def open_job():
            with transaction.atomic():
                return job_queued(customer.user, assign_now=True)

        job = await sync_to_async(open_job)()
        reader = ReplyReader(channel)
        message = await reader.next(5)
        await reader.close()
        return worker, job, message

    worker, job, message = run(scenario)
    assert (message["type"], message["job_id"]) == (WORKER_JOB_ASSIGN, str(job.id))
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.worker_id, stored.worker_channel, stored.attempts) == (
        Job.Status.ASSIGNED, worker.pk, worker.channel_name, 1)  # fmt: skip
    assert stored.lease_expires_at - stored.assigned_at == timedelta(seconds=settings.JOB_LEASE_SECONDS)
    assert (stored.status, stored.assigned_at, stored.attempts) == (job.status, job.assigned_at, job.attempts)
    assert Worker.objects.get(pk=worker.pk).in_flight == 1

    with transaction.atomic():
        full = job_queued(customer.user, assign_now=True)  # the only worker is full
    stored = Job.objects.get(pk=full.pk)
    assert (stored.status, stored.worker_id, stored.worker_channel, stored.attempts) == (Job.Status.QUEUED, None, "", 0)
    assert stored.assigned_at is None and stored.lease_expires_at is None
    assert Worker.objects.get(pk=worker.pk).in_flight == 1


@pytest.mark.parametrize("assign_now", [True, False])
def test_a_job_that_names_no_token_type_pays_as_its_account_says_when_it_goes_in(
    platform, operator, customer, assign_now
):
    """The chat view reads the key (and its user) from a cache: the account's default token type is read
    with the job's insert, so a change made a moment ago elsewhere already applies."""
    worker_online(operator.user, "w", slots=1)
    SogniRate.objects.create(usd_per_sogni=Decimal("0.02"))
    wallet_adjust(
        wallet=wallets_ensure(user=customer.user)["sogni"],
        amount=Decimal(100),
        reason="test",
        operator=operator.user,
        key="sogni",
    )
    customer.user.refresh_from_db()
    assert customer.user.default_token_type != "sogni"
    User.objects.filter(pk=customer.user.pk).update(default_token_type="sogni")  # another process's write
    with transaction.atomic():
        jobs = [job_queued(customer.user, token_type=None, assign_now=assign_now),
                job_queued(customer.user, token_type="spark", assign_now=assign_now)]  # fmt: skip
    stored = [Job.objects.get(pk=job.pk) for job in jobs]
    assert [job.token_type for job in jobs] == [job.token_type for job in stored] == ["sogni", "spark"]
    if assign_now:
        assert [job.status for job in stored] == [Job.Status.ASSIGNED, Job.Status.QUEUED]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_a_new_job_waits_for_the_claim_on_the_only_free_worker_and_goes_to_it(platform, operator, customer):
    """Every free worker being claimed by another transaction: the new job goes in queued, waits for that
    claim's commit and is then assigned to the worker in the same transaction."""
    worker = worker_online(operator.user, "w", slots=2)
    with worker_row_held(worker, seconds=0.3) as released, transaction.atomic():
        job = job_queued(customer.user, assign_now=True)
    assert released.is_set()
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.worker_id, stored.attempts) == (Job.Status.ASSIGNED, worker.pk, 1)
    assert Worker.objects.get(pk=worker.pk).in_flight == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_a_dispatch_waits_for_a_worker_row_another_transaction_holds(platform, operator, customer):
    """A slot claim or release elsewhere holds the worker row until its commit: the new job waits for
    it and takes the slot, instead of staying queued behind a lock that is gone a moment later."""
    worker = worker_online(operator.user, "w", slots=2)
    with worker_row_held(worker, seconds=0.3) as released:
        job = job_queued(customer.user)
    assert released.is_set()
    assert assigned_to(job) == "w"
    assert Worker.objects.get(pk=worker.pk).in_flight == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_a_dispatch_lets_go_of_a_worker_that_filled_up_before_it_waits_for_the_next(platform, operator, customer):
    """A dispatch that waited for a worker's row and found its last slot taken must not keep that row
    locked while it waits for the next worker: two dispatches could each hold the row the other waits
    for, and PostgreSQL would kill one of them as a deadlock."""
    first = worker_online(operator.user, "first", slots=1)
    second = worker_online(operator.user, "second", slots=1)
    holders = {}
    locked = {name: threading.Event() for name in ("first", "second")}
    release = {name: threading.Event() for name in ("first", "second")}

    def hold(name: str, worker: Worker, *, fill: bool) -> None:
        try:
            with transaction.atomic():
                Worker.objects.select_for_update().get(pk=worker.pk)
                holders[name] = backend_pid()
                locked[name].set()
                release[name].wait(10)
                if fill:  # another job took the worker's last slot
                    Worker.objects.filter(pk=worker.pk).update(in_flight=1)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=hold, args=("first", first), kwargs={"fill": True}),
        threading.Thread(target=hold, args=("second", second), kwargs={"fill": False}),
    ]
    for thread in threads:
        thread.start()
    assert all(event.wait(10) for event in locked.values())

    created = []
    dispatcher = threading.Thread(target=lambda: (created.append(job_queued(customer.user)), connection.close()))
    dispatcher.start()
    wait_until_blocked_by(holders["first"])  # the dispatch waits for the best worker
    release["first"].set()
    wait_until_blocked_by(holders["second"])  # it found that one full and waits for the next
    with transaction.atomic():
        assert Worker.objects.select_for_update(nowait=True).get(pk=first.pk).in_flight == 1

    release["second"].set()
    for thread in [*threads, dispatcher]:
        thread.join(10)
    assert assigned_to(created[0]) == "second"
    assert Worker.objects.get(pk=second.pk).in_flight == 1


def test_claiming_and_freeing_a_slot_are_heap_only_updates_of_the_worker_row(platform, operator, customer):
    """No index holds in_flight and the table leaves room on its pages, so the two updates every request
    makes to its worker's row add no index entries (dead ones would slow every later dispatch)."""
    from inference.services.dispatch import worker_slot_free

    worker = worker_online(operator.user, "hot", slots=4)
    with transaction.atomic():
        job = job_queued(customer.user)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_get_xact_tuples_updated('inference_worker'::regclass), "
                           "pg_stat_get_xact_tuples_hot_updated('inference_worker'::regclass)")  # fmt: skip
            before = cursor.fetchone()
            from inference.services.dispatch import worker_slot_claim

            assert worker_slot_claim(model_id=job.model_id, now=timezone.now())
            worker_slot_free(worker_id=worker.pk, channel_name=worker.channel_name, model_id=job.model_id)
            cursor.execute("SELECT pg_stat_get_xact_tuples_updated('inference_worker'::regclass), "
                           "pg_stat_get_xact_tuples_hot_updated('inference_worker'::regclass)")  # fmt: skip
            after = cursor.fetchone()
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)
