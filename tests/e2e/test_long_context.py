"""The embedded SmolLM2 serves its trained 8,192-token context: an agent's ~4,000-token system prompt
plus a question is answered by the real llama.cpp worker, counted and billed by the platform."""

import openai
import pytest

from tests.support.workers import SMOLLM2

# A ceiling for a shared 2-core machine: the prefill alone is minutes there (docs/workers.md).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

RULE = "Rule {n}: when the user asks about the colour of the sky, remember that tools are listed below.\n"


def test_a_four_thousand_token_system_prompt_is_answered(workers, live_platform, user):
    models = openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0).models
    assert models.retrieve(SMOLLM2).model_extra["context_window"] == 8192
    workers.start("smol-8k", extra=["--n-ctx", "8192", "--threads", "2"])
    client = openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=1500)
    system = "You are a helpful assistant.\n" + "".join(RULE.format(n=n) for n in range(190))
    reply = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "What colour is the sky?"}],
        max_tokens=16,
        temperature=0,
    )
    assert 4000 <= reply.usage.prompt_tokens <= 8192 - 16
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
