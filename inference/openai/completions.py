"""Parse and validate a POST /v1/completions body (OpenAI's legacy completions) into a ChatRequest
whose `prompt` is sent to the engine as it is, without a chat template.

Accepted: `prompt` (a string, or a list holding one string), `max_tokens` (OpenAI's default 16),
the sampling fields chat accepts, `stop`, `seed`, `stream` (+ `stream_options.include_usage`),
`logprobs` (0-5 alternatives per token), `echo` false, `user`, `token_type`. Refused with a 400 naming
the field: `suffix`, `echo` true, `n` / `best_of` above 1, `logit_bias`, token-id prompts.
"""

from collections.abc import Mapping
from typing import Any

from inference.openai.checks import get_bool, get_int, get_object, invalid, unsupported, wrong_type
from inference.openai.requests import ChatRequest, common_fields, load_json_body, sampling_options

DEFAULT_MAX_TOKENS = 16  # OpenAI's, for this endpoint
MAX_LOGPROBS = 5


def _prompt(body: dict) -> str:
    value = body.get("prompt")
    if value is None:
        invalid("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    if isinstance(value, list):
        if len(value) != 1:
            invalid(
                "Invalid 'prompt': one prompt per request; send a string or a list holding one string.",
                param="prompt",
                code="unsupported_value",
            )
        value = value[0]
        param = "prompt[0]"
    else:
        param = "prompt"
    if isinstance(value, list | int) and not isinstance(value, bool):
        unsupported(param, "as token ids is not supported: token ids differ between the engines serving a model.")
    if not isinstance(value, str):
        wrong_type(param, "a string", value)
    if not value:
        invalid(f"Invalid '{param}': empty string.", param=param, code="empty_string")
    return value


def _refuse_unhonourable(body: dict) -> None:
    if body.get("suffix") is not None:
        unsupported("suffix", "is not supported: insertion (fill-in-the-middle) is not served here.")
    if get_bool(body, "echo", "echo"):
        unsupported("echo", "is not supported: the reply holds the completion only.")
    for name in ("n", "best_of"):
        value = get_int(body, name, name, minimum=1)
        if value is not None and value > 1:
            unsupported(name, "greater than 1 is not supported: one choice per request.")
    if get_object(body, "logit_bias", "logit_bias"):
        unsupported("logit_bias", "is not supported: token ids differ between the engines serving a model.")


def _logprobs(body: dict) -> dict[str, Any]:
    count = get_int(body, "logprobs", "logprobs", minimum=0, maximum=MAX_LOGPROBS)
    return {} if count is None else {"logprobs": True, "top_logprobs": count}


def parse_completion_request(raw_body: bytes, *, content_type: str | None, headers: Mapping[str, str]) -> ChatRequest:
    body = load_json_body(raw_body, content_type=content_type)
    prompt = _prompt(body)
    _refuse_unhonourable(body)
    max_tokens = get_int(body, "max_tokens", "max_tokens", minimum=1)
    return ChatRequest(
        messages=[],
        prompt=prompt,
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        options=sampling_options(body) | _logprobs(body),
        **common_fields(body, headers),
    )
