"""Celery tasks of the inference app: thin, take ids, call a service."""

from celery import shared_task

from inference.services.dispatch import job_dispatch, jobs_dispatch_queued


@shared_task(acks_late=True, ignore_result=True)
def dispatch_job_task(job_id: str) -> None:
    job_dispatch(job_id=job_id)


@shared_task(acks_late=True, ignore_result=True)
def dispatch_queued_task(model_id: str) -> None:
    jobs_dispatch_queued(model_id=model_id)


@shared_task(acks_late=True, ignore_result=True)
def reap_stale_task() -> None:
    """Periodic (Celery beat): release what died with a server process."""
    from inference.services import jobs_expire_abandoned, workers_reap_stale

    workers_reap_stale()
    jobs_expire_abandoned()


@shared_task(acks_late=True, ignore_result=True)
def reap_leases_task() -> None:
    """Periodic (Celery beat, JOB_REAPER_SECONDS): lapsed job leases, over-long jobs, orphaned holds."""
    from inference.services.leases import reliability_sweep

    reliability_sweep()


@shared_task(acks_late=True, ignore_result=True)
def release_escrow_task() -> None:
    """Periodic (Celery beat): worker earnings whose probation ended become available."""
    from billing.escrow import escrow_release_due

    escrow_release_due()


@shared_task(acks_late=True, ignore_result=True)
def purge_stored_responses_task() -> None:
    """Periodic (Celery beat, hourly): stored responses past RESPONSES_RETENTION_DAYS."""
    from inference.services.stored_responses import stored_responses_purge

    stored_responses_purge()
