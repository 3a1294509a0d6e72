"""The openai SDK's streaming requests get the real HTTP status of a failure known before the first
token — a 402, a model with no worker online, a job the worker refuses at once — so it raises the
status's own APIStatusError subclass, as it does without streaming."""

import openai
import pytest

from tests.support.workers import SMOLLM2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# No tokenizer for it on the platform (bounded), so only the worker's 1024-token context refuses a long prompt.
BOUNDED = "qwen3.5-35b-a3b-abliterated-gguf-q4km"
OFFLINE = "qwen3.5-35b-a3b-gguf-q4km"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def client(live_platform, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=120)


def test_streams_fail_with_the_status_of_what_went_wrong(workers, client):
    workers.start("refuser", models=[SMOLLM2, BOUNDED])  # llama-cpp, --n-ctx 1024

    with pytest.raises(openai.APIStatusError) as caught:  # the SDK has no subclass of its own for 402
        client.chat.completions.create(model=SMOLLM2, messages=HI, stream=True, extra_body={"token_type": "sogni"})
    assert caught.value.status_code == 402  # the SOGNI wallet is empty
    assert caught.value.code == "insufficient_balance"

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=OFFLINE, messages=HI, stream=True)
    assert (caught.value.status_code, caught.value.code) == (503, "no_worker_available")

    long_prompt = [{"role": "user", "content": "hello " * 1500}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=BOUNDED, messages=long_prompt, max_tokens=8, stream=True)
    assert caught.value.code == "context_length_exceeded"

    # A stream that works still streams.
    stream = client.chat.completions.create(model=SMOLLM2, messages=HI, max_tokens=4, temperature=0, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices).strip()
