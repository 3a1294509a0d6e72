"""The worker registry: a connection registers, beats, drains and goes away."""

import functools
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey
from inference.models import LlmModel, OwnerTrust, Worker
from inference.protocol import CLOSE_BANNED, CLOSE_INVALID_KEY, CLOSE_PROTOCOL_VIOLATION, CLOSE_TOO_MANY_CONNECTIONS
from inference.relay import WORKER_KICK, channel_send
from inference.selectors import worker_fresh_since
from inference.services.jobs import Relayed, release_connection_jobs

logger = logging.getLogger(__name__)

CLOSE_DUPLICATE = CLOSE_PROTOCOL_VIOLATION


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
        transaction.on_commit(functools.partial(dispatch_queued_task.delay, model_id))


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
    api_key: ApiKey | None = None,
    resumes: str = "",
    features: list[str] | tuple[str, ...] = (),
) -> Registration:
    """Bring the (owner, name) worker online on this connection; queued jobs of its models dispatch
    after commit. Refused while another live connection holds the name, if the owner is banned or
    holds WORKER_MAX_CONNECTIONS_PER_OWNER live connections, or if `api_key` (the connection's) no
    longer authenticates. A worker process reconnecting (`resumes`: the worker id its last welcome
    gave it) takes its row over from the connection it lost, which may still look live (its server
    process died, or the network dropped it without a close): that connection's jobs are released
    and, if it is still open somewhere, it is closed.

    The key's row stays locked to the commit: a key change (which locks it too) either comes first and
    refuses this, or comes after and finds this connection to close (owner_connections_close_on_commit).
    The same lock makes one owner's registrations count their connections one at a time.
    """
    requested = list(dict.fromkeys(model_ids))
    known = set(LlmModel.objects.filter(id__in=requested, enabled=True).values_list("id", flat=True))
    accepted = [model_id for model_id in requested if model_id in known]
    rejected = [model_id for model_id in requested if model_id not in known]
    now = timezone.now()
    with transaction.atomic():
        if api_key is not None and not _key_still_valid(api_key):
            raise WorkerRefused("The API key was disabled or regenerated.", close_code=CLOSE_INVALID_KEY)
        # Locked to the commit, as a ban locks it: a ban either refuses this or finds this worker to close.
        trust, _ = OwnerTrust.objects.select_for_update().get_or_create(owner=owner)
        if trust.banned_at is not None:
            raise WorkerRefused("This account's workers are banned by an operator.", close_code=CLOSE_BANNED)
        worker, _ = Worker.objects.select_for_update().get_or_create(owner=owner, name=name)
        if worker.status == Worker.Status.BANNED:
            raise WorkerRefused("This worker is banned by an operator.", close_code=CLOSE_BANNED)
        live = worker.status != Worker.Status.OFFLINE and worker.channel_name and worker.channel_name != channel_name
        fresh = live and worker.last_heartbeat and worker.last_heartbeat >= worker_fresh_since()
        if fresh and resumes == str(worker.pk):
            _close_on_commit(worker.channel_name, reason="replaced by the worker's new connection")
        elif fresh:
            raise WorkerRefused(f"A worker named {name!r} is already connected.", close_code=CLOSE_DUPLICATE)
        connections = _live_workers(owner).exclude(pk=worker.pk).count()
        if connections >= settings.WORKER_MAX_CONNECTIONS_PER_OWNER:
            raise WorkerRefused(
                f"This account already has {connections} workers connected "
                f"(at most {settings.WORKER_MAX_CONNECTIONS_PER_OWNER}).",
                close_code=CLOSE_TOO_MANY_CONNECTIONS,
            )
        stale_channel = worker.channel_name if live else ""
        owner_paused = trust.paused_until if trust.paused_until and trust.paused_until > now else None
        if owner_paused and not (worker.paused_until and worker.paused_until >= owner_paused):
            worker.paused_until = owner_paused  # a new name does not escape its owner's pause
        worker.status = Worker.Status.ONLINE
        worker.channel_name = channel_name
        worker.slots = slots
        worker.in_flight = 0
        worker.engine = engine
        worker.version = version
        worker.hardware = hardware
        worker.features = f" {' '.join(sorted(features))} " if features else ""
        worker.connected_at = now
        worker.last_heartbeat = now
        worker.save()
        worker.served_models.set(accepted)  # type: ignore[arg-type]  # primary keys: model ids are strings
        if stale_channel:
            # The previous connection went silent without a disconnect (its server died).
            release_connection_jobs(channel_name=stale_channel, delivered=None)
        _dispatch_models_on_commit(accepted)
    logger.info("worker %s (%s) online: models=%s slots=%s", worker.pk, name, accepted, slots)
    return Registration(worker=worker, accepted=accepted, rejected=rejected)


def _close_on_commit(channel_name: str, *, reason: str) -> None:
    transaction.on_commit(
        lambda: channel_send(
            channel_name, {"type": WORKER_KICK, "code": CLOSE_DUPLICATE, "reason": reason, "replaced": True}
        )
    )


def _key_still_valid(api_key: ApiKey) -> bool:
    """The connection's key, locked: still enabled, not regenerated, its account active."""
    fresh = ApiKey.objects.select_for_update(of=("self",)).select_related("user").filter(pk=api_key.pk).first()
    return fresh is not None and fresh.is_enabled and fresh.user.is_active and fresh.secret_hash == api_key.secret_hash


def _live_workers(owner):
    return Worker.objects.filter(
        owner=owner, status__in=(Worker.Status.ONLINE, Worker.Status.DRAINING), last_heartbeat__gte=worker_fresh_since()
    )


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


def owner_key_revoked(*, user_id: int, **_signal) -> None:
    """accounts.signals.api_key_revoked: the owner's worker sockets close after commit (4001)."""
    owner_connections_close_on_commit(owner_id=user_id, code=CLOSE_INVALID_KEY, reason="invalid or disabled API key")


def owner_connections_close_on_commit(*, owner_id: int, code: int, reason: str) -> None:
    """After commit, close every worker connection of the owner's, in whichever server process holds it.

    Read after the commit, so a registration that committed first is found; one that commits later
    re-checks what changed (worker_register).
    """

    def close() -> None:
        channels = (
            Worker.objects.filter(owner_id=owner_id)
            .exclude(status=Worker.Status.OFFLINE)
            .exclude(channel_name="")
            .values_list("channel_name", flat=True)
        )
        for channel in channels:
            channel_send(channel, {"type": WORKER_KICK, "code": code, "reason": reason})

    transaction.on_commit(close)


def worker_ban(*, worker: Worker) -> None:
    """An operator bans a worker, and so its owner: none of its workers takes jobs, their connections are
    closed with 4008, and no worker name of that owner may register."""
    with transaction.atomic():
        OwnerTrust.objects.update_or_create(owner_id=worker.owner_id, defaults={"banned_at": timezone.now()})
        Worker.objects.filter(owner_id=worker.owner_id).update(status=Worker.Status.BANNED)
        owner_connections_close_on_commit(owner_id=worker.owner_id, code=CLOSE_BANNED, reason="banned by an operator")


def worker_unban(*, worker: Worker) -> None:
    """Lift the ban of the worker's owner: its workers may register again (offline until they do)."""
    with transaction.atomic():
        OwnerTrust.objects.filter(owner_id=worker.owner_id).update(banned_at=None)
        Worker.objects.filter(owner_id=worker.owner_id, status=Worker.Status.BANNED).update(
            status=Worker.Status.OFFLINE
        )


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
