"""Settlement, the job side: an ending job's hold is settled for what the client got, or released.

`job_settle` is called by `job_end` (inference.services.jobs), the one place a job ends, in the
transaction that changes its status; billing's hold_settle and hold_release do the postings
(billing.services.holds). Billing's job id is str(job.id).
"""

import logging

from billing.models import Hold
from billing.services.holds import HoldNotFound, hold_release, hold_settle
from inference.models import Job
from inference.relay import REPLY_DONE

logger = logging.getLogger(__name__)


def job_settle(job: Job) -> Hold | None:
    """Settle the ended job's hold for the tokens the client got, or release it; None if it had none.

    Completed: prompt + completion, the worker's owner earns its share. Cancelled by the client after
    tokens were delivered: the prompt (job_fail records the platform's count) and the delivered
    completion tokens, the owner earns its share. Failed after delivery (the worker broke off): the
    delivered completion tokens only, the owner earns nothing. Nothing delivered: the hold is
    released in full.
    """
    job_id = str(job.id)
    completion_tokens = min(job.completion_tokens, job.max_tokens)
    try:
        if job.status == Job.Status.COMPLETED or completion_tokens > 0:
            served = job.status in (Job.Status.COMPLETED, Job.Status.CANCELLED)
            earns = served and job.worker_id is not None
            return hold_settle(
                job_id=job_id,
                prompt_tokens=job.prompt_tokens if served else 0,
                completion_tokens=completion_tokens,
                worker_owner_id=job.worker.owner_id if earns and job.worker else None,
            )
        return hold_release(job_id=job_id)
    except HoldNotFound:
        logger.warning("job %s ended without a hold: nothing to settle", job_id)
        return None


def _cost(hold: Hold | None) -> dict | None:
    """usage.cost of a settled hold, as exact decimal strings."""
    if hold is None:
        return None
    return {
        "token_type": hold.wallet.token_type,
        "amount": f"{hold.charged.normalize():f}",
        "usd": f"{hold.usd_charged.normalize():f}",
    }


def job_done_message(job: Job, *, hold: Hold | None) -> dict:
    """The reply-channel message of a completed job, with its usage and what its hold charged."""
    usage = {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": job.completion_tokens,
        "total_tokens": job.prompt_tokens + job.completion_tokens,
        "reasoning_tokens": job.reasoning_tokens,
    }
    return {"type": REPLY_DONE, "finish_reason": job.finish_reason, "usage": usage, "cost": _cost(hold)}
