"""The embedded SmolLM2 serves its trained 8,192-token context: an agent's ~4,000-token system prompt
plus a question is answered by the real llama.cpp worker, counted and billed by the platform."""

import openai
import pytest

from tests.support.processes import start_daphne
from tests.support.workers import SMOLLM2, start_worker, wait_worker_online

# A ceiling for a shared 2-core machine: the prefill alone takes minutes there (docs/workers.md).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

RULE = "Rule {n}: when the user asks about the colour of the sky, remember that tools are listed below.\n"


@pytest.fixture
def patient_platform(live_env):
    """A platform of its own whose jobs may run as long as a slow machine's prefill needs."""
    daphne = start_daphne({**live_env, "JOB_MAX_DURATION_SECONDS": "3600"})
    yield daphne.extra["url"]
    daphne.stop()


def test_a_four_thousand_token_system_prompt_is_answered(patient_platform, operator, user):
    client = openai.OpenAI(base_url=patient_platform + "/v1", api_key=user.key, max_retries=0, timeout=2000)
    assert client.models.retrieve(SMOLLM2).model_extra["context_window"] == 8192
    worker = start_worker(
        url=patient_platform, key=operator.key, name="smol-8k", extra=["--n-ctx", "8192", "--threads", "2"]
    )
    try:
        wait_worker_online(worker, owner=operator.user)
        system = "You are a helpful assistant.\n" + "".join(RULE.format(n=n) for n in range(190))
        reply = client.chat.completions.create(
            model=SMOLLM2,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": "What colour is the sky?"}],
            max_tokens=16,
            temperature=0,
        )
    finally:
        worker.stop(timeout=20)
    assert 4000 <= reply.usage.prompt_tokens <= 8192 - 16
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
