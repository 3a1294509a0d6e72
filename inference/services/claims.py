"""A worker's usage claims against the platform's counts, at each end of a job.

The platform bills its own counts (inference.counting); the worker's usage is kept beside them. A
claim off by more than CLAIM_TOLERANCE_PERCENT % + CLAIM_TOLERANCE_TOKENS is a discrepancy, recorded
against the worker as a fault (inference.services.trust) and on Worker.discrepancies.
"""

from decimal import Decimal
from typing import Any

from django.conf import settings

from inference.counting import BOUNDED, EXACT, completion_count
from inference.models import Job

# Tokens an engine generates for a tool call's framing (llama_prompt's "functions.", "message:\n",
# <tool_call>...) that are not relayed as text: allowed on top of the tolerance when tools are offered.
TOOLS_ALLOWANCE = 16


def _allowance(request: dict) -> int:
    """Generated tokens an honest engine does not relay: tool-call framing, and the stop string that
    ended the reply (at most a token per byte, plus the token it ended in)."""
    stop = request.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    allowance = TOOLS_ALLOWANCE if request.get("tools") else 0
    return allowance + max((len(s.encode("utf-8")) + 1 for s in stop), default=0)


def claim_off(*, claimed: int | None, counted: int, allowance: int = 0) -> bool:
    """True if `claimed` is farther from `counted` than the tolerance (no claim: never)."""
    if claimed is None:
        return False
    tolerance = counted * settings.CLAIM_TOLERANCE_PERCENT / Decimal(100) + settings.CLAIM_TOLERANCE_TOKENS
    return abs(claimed - counted) > tolerance + allowance


def job_counts(job: Job, *, output: str, claimed_completion: int | None, claimed_prompt: int | None = None) -> dict:
    """_job_end's fields for `job`, which relayed `output` (its completion text): the platform's
    completion count (at most max_tokens) and, given the worker's prompt claim, its prompt count, with
    the claims beside them. An unknown claim is None."""
    completion, counting = completion_count(model=job.model, text=output, claimed=claimed_completion or 0)
    exact = counting == EXACT and job.token_counting == EXACT
    allowance = _allowance(job.request)
    fields: dict[str, Any] = {
        "completion_tokens": min(completion, job.max_tokens),
        "output_bytes": len(output.encode("utf-8")),
        "claimed_completion_tokens": claimed_completion,
        "token_counting": EXACT if exact else BOUNDED,
        "claim_discrepancy": claim_off(claimed=claimed_completion, counted=completion, allowance=allowance),
    }
    if claimed_prompt is not None:
        fields["claimed_prompt_tokens"] = claimed_prompt
        if job.token_counting == EXACT:  # the opening counted it
            fields["prompt_tokens"] = job.prompt_tokens_estimate
            fields["claim_discrepancy"] |= claim_off(claimed=claimed_prompt, counted=job.prompt_tokens_estimate)
        else:  # never more than fits the model, nor than the bound the hold was taken for
            bound = min(job.model.context_window, job.prompt_tokens_estimate or job.model.context_window)
            fields["prompt_tokens"] = min(claimed_prompt, bound)
    return fields
