"""Writes of the inference app: worker registry, jobs and dispatch."""

from inference.services.dispatch import job_dispatch, jobs_dispatch_queued
from inference.services.jobs import (
    job_cancel,
    job_complete,
    job_expire,
    job_fail,
    job_mark_running,
    job_requeue,
    jobs_expire_abandoned,
)
from inference.services.workers import (
    Registration,
    WorkerRefused,
    worker_ban,
    worker_disconnect,
    worker_heartbeat,
    worker_register,
    worker_set_draining,
    worker_unban,
    workers_reap_stale,
)

__all__ = [
    "Registration",
    "WorkerRefused",
    "job_cancel",
    "job_complete",
    "job_dispatch",
    "job_expire",
    "job_fail",
    "job_mark_running",
    "job_requeue",
    "jobs_dispatch_queued",
    "jobs_expire_abandoned",
    "worker_ban",
    "worker_disconnect",
    "worker_heartbeat",
    "worker_register",
    "worker_set_draining",
    "worker_unban",
    "workers_reap_stale",
]
