"""The worker registry: a connection registers, beats, drains and goes away."""

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from inference.models import LlmModel, Worker
from inference.relay import WORKER_KICK, send_on_commit
from inference.selectors import worker_fresh_since
from inference.services.jobs import Relayed, release_connection_jobs

logger = logging.getLogger(__name__)

CLOSE_BANNED = 4008
CLOSE_DUPLICATE = 4003


class WorkerRefused(Exception):
    def __init__(self, reason: str, *, close_code: int):
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


@dataclass
class Registration:
    worker: Worker
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def _dispatch_models_on_commit(model_ids: list[str]) -> None:
    from inference.tasks import dispatch_queued_task

    for model_id in model_ids:
        transaction.on_commit(lambda model_id=model_id: dispatch_queued_task.delay(model_id))


def worker_register(
    *,
    owner,
    name: str,
    model_ids: list[str],
    slots: int,
    engine: str,
    version: str,
    hardware: dict,
    channel_name: str,
) -> Registration:
    """Bring the (owner, name) worker online on this connection; queued jobs of its models dispatch
    after commit. Refused while another live connection holds the name, or if it is banned."""
    requested = list(dict.fromkeys(model_ids))
    known = set(LlmModel.objects.filter(id__in=requested, enabled=True).values_list("id", flat=True))
    accepted = [model_id for model_id in requested if model_id in known]
    rejected = [model_id for model_id in requested if model_id not in known]
    now = timezone.now()
    with transaction.atomic():
        worker, _ = Worker.objects.select_for_update().get_or_create(owner=owner, name=name)
        if worker.status == Worker.Status.BANNED:
            raise WorkerRefused("This worker is banned by an operator.", close_code=CLOSE_BANNED)
        live = worker.status != Worker.Status.OFFLINE and worker.channel_name and worker.channel_name != channel_name
        if live and worker.last_heartbeat and worker.last_heartbeat >= worker_fresh_since():
            raise WorkerRefused(f"A worker named {name!r} is already connected.", close_code=CLOSE_DUPLICATE)
        stale_channel = worker.channel_name if live else ""
        worker.status = Worker.Status.ONLINE
        worker.channel_name = channel_name
        worker.slots = slots
        worker.in_flight = 0
        worker.engine = engine
        worker.version = version
        worker.hardware = hardware
        worker.connected_at = now
        worker.last_heartbeat = now
        worker.save()
        worker.served_models.set(accepted)
        if stale_channel:
            # The previous connection went silent without a disconnect (its server died).
            release_connection_jobs(channel_name=stale_channel, delivered=None)
        _dispatch_models_on_commit(accepted)
    logger.info("worker %s (%s) online: models=%s slots=%s", worker.pk, name, accepted, slots)
    return Registration(worker=worker, accepted=accepted, rejected=rejected)


def worker_heartbeat(*, worker_id: int, channel_name: str) -> bool:
    """False if this connection no longer holds the worker (it should close)."""
    return bool(
        Worker.objects.filter(pk=worker_id, channel_name=channel_name)
        .exclude(status__in=(Worker.Status.OFFLINE, Worker.Status.BANNED))
        .update(last_heartbeat=timezone.now())
    )


def worker_set_draining(*, worker_id: int, channel_name: str) -> None:
    """The worker takes no new jobs; running ones finish."""
    Worker.objects.filter(pk=worker_id, channel_name=channel_name, status=Worker.Status.ONLINE).update(
        status=Worker.Status.DRAINING
    )


def worker_disconnect(*, worker_id: int, channel_name: str, delivered: dict[str, Relayed]) -> None:
    """The connection closed (or died): the worker goes offline, then its jobs are released.

    Two transactions, in this order: once the first commits no dispatch can pick the worker, so the
    second sees every job ever sent to this connection. `delivered` maps each job that streamed
    tokens to what was relayed of it; those fail, the others are requeued.
    """
    with transaction.atomic():
        Worker.objects.filter(pk=worker_id, channel_name=channel_name).exclude(status=Worker.Status.BANNED).update(
            status=Worker.Status.OFFLINE
        )
    released = release_connection_jobs(channel_name=channel_name, delivered=delivered)
    Worker.objects.filter(pk=worker_id, channel_name=channel_name).update(in_flight=0)
    logger.info("worker %s disconnected; %s job(s) released", worker_id, released)


def worker_ban(*, worker: Worker) -> None:
    """An operator bans a worker: it takes no jobs and its connection is closed with 4008."""
    with transaction.atomic():
        Worker.objects.filter(pk=worker.pk).update(status=Worker.Status.BANNED)
        if worker.channel_name:
            send_on_commit(worker.channel_name, {"type": WORKER_KICK, "code": CLOSE_BANNED})


def worker_unban(*, worker: Worker) -> None:
    """Lift a ban: the worker may register again (it comes back offline until it does)."""
    Worker.objects.filter(pk=worker.pk, status=Worker.Status.BANNED).update(status=Worker.Status.OFFLINE)


def workers_reap_stale() -> int:
    """Workers whose connection died with its server (no disconnect ran): offline, jobs released.

    A worker counts as gone after three heartbeat intervals without one; its consumer, if it is in
    fact alive, finds the worker offline at its next heartbeat and closes.
    """
    reaped = 0
    cutoff = worker_fresh_since()
    stale = Worker.objects.filter(
        status__in=(Worker.Status.ONLINE, Worker.Status.DRAINING), last_heartbeat__lt=cutoff
    ).values_list("pk", "channel_name")
    for worker_id, channel_name in stale:
        with transaction.atomic():
            gone = (
                Worker.objects.filter(pk=worker_id, channel_name=channel_name, last_heartbeat__lt=cutoff)
                .exclude(status__in=(Worker.Status.OFFLINE, Worker.Status.BANNED))
                .update(status=Worker.Status.OFFLINE)
            )
        if gone:
            released = release_connection_jobs(channel_name=channel_name, delivered=None)
            Worker.objects.filter(pk=worker_id, channel_name=channel_name).update(in_flight=0)
            logger.warning("worker %s went silent; marked offline, %s job(s) released", worker_id, released)
            reaped += 1
    return reaped
