"""Parse and validate a POST /v1/chat/completions body into a ChatRequest.

Every problem raises ApiError with OpenAI's shape: 413 (body too large), 415 (not JSON),
400 code invalid_json (unparseable or not an object), 400 invalid_request_error naming the param.
Unknown top-level fields are ignored, as OpenAI-compatible servers commonly do; fields we would
have to silently ignore although they change the answer (n > 1, audio, logit_bias, ...) are refused.
"""

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from inference.openai.checks import (
    INT64_MAX,
    INT64_MIN,
    get_bool,
    get_int,
    get_list,
    get_number,
    get_object,
    get_str,
    invalid,
    unsupported,
    wrong_type,
)
from inference.openai.messages import normalise_messages
from inference.openai.sampling import SAMPLING_LIMITS
from inference.openai.tools import normalise_response_format, normalise_tool_choice, normalise_tools
from sogni_platform.exceptions import ApiError

TOKEN_TYPES = ("spark", "sogni", "auto")
TOKEN_TYPE_HEADER = "x-token-type"
MAX_STOP = SAMPLING_LIMITS["stop"]["max_items"]
MAX_TOP_LOGPROBS = 20
MAX_DEPTH = 64  # JSON nesting; real tool and response schemas stay far below
# Tokens a chat template adds beyond the text itself, generously: role markers and separators per
# message, the JSON wrapping of each tool call, the tool-use instructions when tools are offered,
# and the generation prompt (with an empty think block when thinking is off).
PER_MESSAGE_OVERHEAD = 16
PER_TOOL_CALL_OVERHEAD = 32
TOOLS_OVERHEAD = 512
PROMPT_OVERHEAD = 32
# Sampling fields copied to job.request only when the client set them, in the protocol's order;
# SAMPLING_ONLY are those that are not tools, formats or templates.
SAMPLING_ONLY = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "seed",
)
SAMPLING_FIELDS = (
    *SAMPLING_ONLY,
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "chat_template_kwargs",
    "logprobs",
    "top_logprobs",
)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict]
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    # "auto" when the request does not say; token_type_explicit tells the view it may apply the account default.
    token_type: str = "auto"
    token_type_explicit: bool = False
    user: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # A legacy completion's raw prompt (POST /v1/completions), sent to the engine as it is, without a
    # chat template; `messages` is empty then.
    prompt: str | None = None

    @property
    def input_param(self) -> str:
        """The body field holding the prompt, for errors about its length."""
        return "prompt" if self.prompt is not None else "messages"

    def worker_features(self) -> tuple[str, ...]:
        """The worker features (protocol hello.features) a job for this request needs."""
        needs = ("logprobs",) if self.options.get("logprobs") else ()
        return (*needs, "prompt") if self.prompt is not None else needs

    def engine_request(self, *, max_tokens: int | None = None) -> dict:
        """The protocol's job.request: normalised messages (or the raw prompt) and only the fields the
        client set."""
        if self.prompt is not None:
            request: dict[str, Any] = {"prompt": self.prompt}
        else:
            request = {"messages": copy.deepcopy(self.messages)}
        limit = max_tokens if max_tokens is not None else self.max_tokens
        if limit is not None:
            request["max_tokens"] = limit
        request["stream"] = True
        for name in SAMPLING_FIELDS:
            if name in self.options:
                request[name] = copy.deepcopy(self.options[name])
        return request

    def prompt_text(self) -> str:
        """Everything the engine's chat template renders into the prompt, as text."""
        if self.prompt is not None:
            return self.prompt
        pieces = []
        for message in self.messages:
            pieces.append(message["role"])
            pieces.append(message.get("content") or "")
            for call in message.get("tool_calls", ()):
                pieces += [call["id"], call["function"]["name"], call["function"]["arguments"]]
            if "tool_call_id" in message:
                pieces.append(message["tool_call_id"])
        for name in ("tools", "response_format"):
            if name in self.options:
                pieces.append(json.dumps(self.options[name], separators=(",", ":"), ensure_ascii=False))
        return "\n".join(pieces)

    def estimate_prompt_tokens(self, *, context_window: int | None = None) -> int:
        """An upper bound on the prompt's tokens, without a tokenizer.

        Byte-level BPE and SentencePiece with byte fallback never produce more tokens than the
        UTF-8 bytes they encode, so bytes(prompt_text) bounds the text; the template's own tokens
        are bounded by the *_OVERHEAD constants. It is meant for the worst-case hold, not for
        context-length checks: English runs at ~4 bytes per token, so it overestimates. An engine
        cannot bill more prompt tokens than its context window, hence the cap.
        """
        calls = sum(len(message.get("tool_calls", ())) for message in self.messages)
        estimate = (
            len(self.prompt_text().encode("utf-8"))
            + PER_MESSAGE_OVERHEAD * len(self.messages)
            + PER_TOOL_CALL_OVERHEAD * calls
            + (TOOLS_OVERHEAD if "tools" in self.options else 0)
            + PROMPT_OVERHEAD
        )
        return min(estimate, context_window) if context_window else estimate


def content_type_check(content_type: str | None) -> None:
    media, _, params = (content_type or "").partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media.strip().lower() != "application/json" or charset not in ("utf-8", "utf8"):
        raise ApiError(
            f"Unsupported content type '{content_type or ''}': send the body as application/json (UTF-8).",
            status=415,
            code="unsupported_media_type",
        )


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _too_large(size: int) -> ApiError:
    return ApiError(
        f"The request body is {size} bytes; the limit is {settings.MAX_REQUEST_BYTES} bytes.",
        status=413,
        code="request_too_large",
    )


def json_body_load(raw_body: bytes) -> dict:
    if len(raw_body) > settings.MAX_REQUEST_BYTES:
        raise _too_large(len(raw_body))
    try:
        body = json.loads(raw_body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ApiError(
            f"We could not parse the JSON body of your request ({error}). The OpenAI API expects a JSON payload.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise ApiError("The request body must be a JSON object.", code="invalid_json")
    _scan(body)
    return body


def _scan(body: dict) -> None:
    """Refuse what would break later layers: nesting past MAX_DEPTH (recursion in schema checks
    and copies), NUL characters (PostgreSQL's jsonb cannot store them), lone surrogates (not UTF-8),
    numbers too large for a double (1e400 parses as inf, which JSON cannot carry on)."""
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            items = [(key, f"{path}.{key}" if path else str(key)) for key in value]
            children = [(value[key], child_path, key) for key, child_path in items]
        elif isinstance(value, list):
            children = [(item, f"{path}[{i}]", None) for i, item in enumerate(value)]
        else:
            if isinstance(value, str):
                _check_text(value, path)
            elif isinstance(value, float) and not math.isfinite(value):
                invalid(f"Invalid '{path}': number out of range.", param=path, code="invalid_value")
            continue
        if depth >= MAX_DEPTH:
            invalid(f"Invalid '{path}': nested deeper than {MAX_DEPTH} levels.", param=path, code="invalid_value")
        for child, child_path, key in children:
            if key is not None:
                _check_text(key, child_path)
            stack.append((child, child_path, depth + 1))


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        invalid(
            f"Invalid '{path}': strings may not contain NUL (\\u0000) characters.", param=path, code="invalid_value"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        invalid(f"Invalid '{path}': the string contains a lone UTF-16 surrogate.", param=path, code="invalid_value")


def _refuse_unhonourable(body: dict) -> None:
    n = get_int(body, "n", "n", minimum=1)
    if n is not None and n > 1:
        unsupported("n", "greater than 1 is not supported: one choice per request.")
    if body.get("audio") is not None:
        unsupported("audio", "is not supported: the models served here do not produce audio.")
    modalities = get_list(body, "modalities", "modalities")
    for i, modality in enumerate(modalities or []):
        if modality != "text":
            invalid(
                f"Invalid 'modalities[{i}]': only 'text' output is supported.",
                param=f"modalities[{i}]",
                code="unsupported_value",
            )
    if get_object(body, "logit_bias", "logit_bias"):
        unsupported("logit_bias", "is not supported: token ids differ between the engines serving a model.")
    for name in ("prediction", "web_search_options", "moderation"):
        if body.get(name) is not None:
            unsupported(name, "is not supported by this service.")
    for name in ("functions", "function_call"):
        if body.get(name) is not None:
            unsupported(name, "is deprecated and not supported; use 'tools' and 'tool_choice'.")


def _max_tokens(body: dict) -> int | None:
    legacy = get_int(body, "max_tokens", "max_tokens", minimum=1)
    current = get_int(body, "max_completion_tokens", "max_completion_tokens", minimum=1)
    return current if current is not None else legacy


def _stop(body: dict) -> list[str] | None:
    value = body.get("stop")
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, list):
        wrong_type("stop", "a string or an array of strings", value)
    if len(value) > MAX_STOP:
        invalid(
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, but got "
            f"an array with length {len(value)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            wrong_type(f"stop[{i}]", "a string", item)
        if not item:
            invalid(f"Invalid 'stop[{i}]': empty string.", param=f"stop[{i}]", code="empty_string")
    return value or None


def token_type_read(body: dict, headers: Mapping[str, str]) -> str | None:
    """spark, sogni or auto from the body, else the X-Token-Type header; None when neither says."""
    header = next((v for k, v in headers.items() if k.lower() == TOKEN_TYPE_HEADER), None)
    for value, param in ((body.get("token_type"), "token_type"), (header, "X-Token-Type")):
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            wrong_type(param, "a string", value)
        if value.strip().lower() not in TOKEN_TYPES:
            invalid(
                f"Invalid {param}: '{value}'. Supported values are: 'spark', 'sogni' and 'auto'.",
                param=param,
                code="invalid_token_type",
            )
        return value.strip().lower()
    return None


def sampling_value(body: dict, name: str) -> float | int | None:
    limits = SAMPLING_LIMITS[name]
    exclusive = "exclusive_minimum" in limits
    minimum = limits["exclusive_minimum"] if exclusive else limits["minimum"]
    return get_number(body, name, name, minimum=minimum, maximum=limits.get("maximum"), exclusive_minimum=exclusive)


def _options(body: dict) -> dict[str, Any]:
    options: dict[str, Any] = {
        name: sampling_value(body, name)
        for name in ("temperature", "top_p", "min_p", "repetition_penalty", "frequency_penalty", "presence_penalty")
    }
    options |= {
        "top_k": get_int(body, "top_k", "top_k", minimum=int(SAMPLING_LIMITS["top_k"]["minimum"])),
        "stop": _stop(body),
        "seed": get_int(body, "seed", "seed", minimum=INT64_MIN, maximum=INT64_MAX),
        "parallel_tool_calls": get_bool(body, "parallel_tool_calls", "parallel_tool_calls"),
        "response_format": normalise_response_format(body),
    }
    tools = normalise_tools(body)
    options["tools"] = tools
    options["tool_choice"] = normalise_tool_choice(body, tools)
    if not tools:
        options["parallel_tool_calls"] = None
    kwargs = get_object(body, "chat_template_kwargs", "chat_template_kwargs")
    if kwargs is not None:
        thinking = get_bool(kwargs, "enable_thinking", "chat_template_kwargs.enable_thinking")
        options["chat_template_kwargs"] = {"enable_thinking": thinking} if thinking is not None else None
    return {name: value for name, value in options.items() if value is not None}


def _logprobs(body: dict) -> dict[str, Any]:
    """`logprobs` (true: each output token's log probability) and `top_logprobs` (0-20 alternatives
    per token, only with `logprobs`), as the job asks the engine for them."""
    logprobs = get_bool(body, "logprobs", "logprobs")
    top = get_int(body, "top_logprobs", "top_logprobs", minimum=0, maximum=MAX_TOP_LOGPROBS)
    if top is not None and not logprobs:
        invalid("Invalid 'top_logprobs': it requires 'logprobs' to be true.", param="top_logprobs")
    if not logprobs:
        return {}
    return {"logprobs": True, "top_logprobs": top or 0}


def _check_ignored(body: dict) -> None:
    """Fields OpenAI defines that do not change the answer here: accepted and ignored, but typed."""
    get_object(body, "metadata", "metadata")
    get_bool(body, "store", "store")
    for name in ("service_tier", "reasoning_effort", "verbosity", "safety_identifier", "prompt_cache_key"):
        get_str(body, name, name)


def load_json_body(raw_body: bytes, *, content_type: str | None) -> dict:
    """The request's JSON object: 413, 415 or 400 invalid_json otherwise."""
    if len(raw_body) <= settings.MAX_REQUEST_BYTES:  # 413 first: a huge body is refused whatever its type
        content_type_check(content_type)
    return json_body_load(raw_body)


def common_fields(body: dict, headers: Mapping[str, str]) -> dict[str, Any]:
    """ChatRequest's fields that chat and legacy completions read alike."""
    stream = bool(get_bool(body, "stream", "stream"))
    stream_options = get_object(body, "stream_options", "stream_options") or {}
    include_usage = bool(get_bool(stream_options, "include_usage", "stream_options.include_usage"))
    get_bool(stream_options, "include_obfuscation", "stream_options.include_obfuscation")
    token_type = token_type_read(body, headers)
    return {
        "model": get_str(body, "model", "model", allow_empty=False),
        "stream": stream,
        "include_usage": stream and include_usage,
        "token_type": token_type or "auto",
        "token_type_explicit": token_type is not None,
        "user": get_str(body, "user", "user"),
    }


def parse_chat_request(raw_body: bytes, *, content_type: str | None, headers: Mapping[str, str]) -> ChatRequest:
    body = load_json_body(raw_body, content_type=content_type)
    messages = normalise_messages(body.get("messages"))
    _refuse_unhonourable(body)
    _check_ignored(body)
    return ChatRequest(
        messages=messages,
        max_tokens=_max_tokens(body),
        options=_options(body) | _logprobs(body),
        **common_fields(body, headers),
    )


def sampling_options(body: dict) -> dict[str, Any]:
    """The sampling fields (no tools, formats or templates), checked as chat checks them."""
    return {name: value for name, value in _options(body).items() if name in SAMPLING_ONLY}


def parse_http_request(request: HttpRequest, parse=parse_chat_request):
    """`parse` (parse_chat_request's signature) for a Django request: 413 from Content-Length before
    the body is read, so an oversized body never meets Django's own (HTML) RequestDataTooBig."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > settings.MAX_REQUEST_BYTES:
        raise _too_large(declared)
    try:
        raw_body = request.body
    except RequestDataTooBig:
        raise _too_large(declared) from None
    return parse(raw_body, content_type=request.META.get("CONTENT_TYPE"), headers=request.headers)
