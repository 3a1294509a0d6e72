"""LiteLLM's SDK against the platform as an OpenAI-compatible provider: a reply and a stream.

Run: OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-sogni-... python litellm_sdk.py
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the price list at import

import litellm  # noqa: E402


def main() -> str:
    options = {
        # "openai/<id>": any OpenAI-compatible server; the prefix picks the provider and is not sent.
        "model": "openai/" + os.environ.get("MODEL", "smollm2-135m-instruct-q4_1"),
        "api_base": os.environ["OPENAI_BASE_URL"],
        "api_key": os.environ["OPENAI_API_KEY"],
        "max_tokens": 48,
    }
    messages = [{"role": "user", "content": "Say hello in one short sentence."}]
    reply = litellm.completion(messages=messages, **options)
    text = reply.choices[0].message.content
    assert text and text.strip(), reply
    chunks = litellm.completion(messages=messages, stream=True, **options)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert streamed.strip(), "no text streamed"
    return f"completion {text.strip()[:30]!r} ({reply.usage.total_tokens} tokens), stream {len(streamed)} chars"


if __name__ == "__main__":
    print(main())
