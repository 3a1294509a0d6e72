"""Truthful accounting end to end: real daphne, Celery and a real `sogni-worker` (llama.cpp on SmolLM2),
the official openai SDK."""

import openai
import pytest

from tests.e2e.charging_checks import job_of, ledger_is_sound
from tests.support.factories import SMOLLM2
from tests.support.workers import worker_row

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

LONG = [{"role": "user", "content": "hello " * 8300}]  # past SmolLM2's 8,192-token window


@pytest.fixture
def client(live_platform, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=120)


def test_prompts_over_the_window_are_bad_requests_and_the_worker_agrees_with_the_platforms_count(
    workers, client, user, operator
):
    from inference.models import Job

    workers.start("smol")
    for i in range(10):
        stream = i % 2 == 0
        with pytest.raises(openai.BadRequestError) as caught:  # also with stream=True: before any stream starts
            client.chat.completions.create(model=SMOLLM2, messages=LONG, max_tokens=8, stream=stream)
        assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "messages")
    assert not Job.objects.exists()

    reply = client.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8
    )
    job = job_of(reply.id)
    assert job.status == "completed"
    # The worker's llama.cpp counted the prompt as the platform did.
    assert reply.usage.prompt_tokens == job.prompt_tokens == job.claimed_prompt_tokens
    assert reply.usage.completion_tokens == job.completion_tokens and not job.claim_discrepancy
    worker = worker_row(owner=operator.user, name="smol")
    assert (worker.jobs_failed, worker.faults_in_window, worker.discrepancies, worker.paused_until) == (0, 0, 0, None)
    ledger_is_sound()
