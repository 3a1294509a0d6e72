"""The Responses API's request (OpenAI's `CreateResponse`): validated, then translated into the chat
request the platform already runs, so a response is one chat job with the same counting, holds,
worker protocol and billing.

`input` items become chat messages: message items keep their role (developer becomes system) with
their text parts joined by a newline; `function_call` items become tool_calls of an assistant
message (consecutive calls share one); `function_call_output` items become tool messages;
`reasoning` items are accepted and left out (chat templates drop earlier reasoning too).
`instructions` is a system message before everything, and is not carried to a later response.
"""

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from inference.openai.checks import (
    INT64_MAX,
    INT64_MIN,
    get_bool,
    get_int,
    get_list,
    get_object,
    get_str,
    invalid,
    missing,
    unsupported,
    wrong_type,
)
from inference.openai.messages import MAX_MESSAGES, text_parts_join
from inference.openai.requests import ChatRequest, content_type_check, json_body_load, sampling_value, token_type_read
from inference.openai.tools import function_name_check, function_spec_check, json_schema_check, tool_entries

ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text")
UNSUPPORTED_PARTS = {
    "input_image": "image inputs are not supported by the open-weights models served here",
    "input_file": "file inputs are not supported by the open-weights models served here",
    "input_audio": "audio inputs are not supported by the open-weights models served here",
}
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
THINKING_OFF = ("none", "minimal")
SUMMARIES = ("auto", "concise", "detailed")
# Sampling extensions beside OpenAI's temperature and top_p, as chat completions takes them.
# `include` values are extra output data; only log probabilities would change what is generated, and
# the rest concern tools and inputs refused anyway (or reasoning.encrypted_content: reasoning items
# here carry none), so they are ignored.
LOGPROBS_INCLUDE = "message.output_text.logprobs"
EXTENSIONS = ("top_k", "min_p", "repetition_penalty", "frequency_penalty", "presence_penalty")


@dataclass(frozen=True)
class ResponsesRequest:
    """A validated CreateResponse: `input` as chat messages, the chat options, and what the Response
    object echoes back (`echo`: instructions, tools, tool_choice, text, reasoning, ... in OpenAI's shapes)."""

    input_messages: list[dict]
    model: str | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    max_output_tokens: int | None = None
    token_type: str = "auto"
    token_type_explicit: bool = False
    user: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    echo: dict[str, Any] = field(default_factory=dict)
    # Which input item each message came from, for errors about a function_call_output's call_id.
    output_params: dict[int, str] = field(default_factory=dict)

    def conversation(self, history: list[dict]) -> list[dict]:
        """The earlier conversation (a stored response's) followed by this request's input, checked:
        every function_call_output answers a function call before it."""
        messages = copy.deepcopy(history)
        calls = {call["id"] for message in messages for call in message.get("tool_calls", ())}
        for i, message in enumerate(self.input_messages):
            if message["role"] == "tool" and message["tool_call_id"] not in calls:
                param = self.output_params.get(i, "input")
                invalid(
                    f"No tool call found for function call output with call_id {message['tool_call_id']}.",
                    param=param,
                    code="invalid_value",
                )
            calls.update(call["id"] for call in message.get("tool_calls", ()))
            messages.append(copy.deepcopy(message))
        return messages

    def chat_request(self, conversation: list[dict]) -> ChatRequest:
        """The chat request this response runs as: the instructions, then `conversation` (conversation())."""
        messages = copy.deepcopy(conversation)
        instructions = self.echo.get("instructions")
        if instructions:
            messages.insert(0, {"role": "system", "content": instructions})
        if not messages:
            missing("input")
        return ChatRequest(
            messages=messages,
            model=self.model,
            stream=self.stream,
            max_tokens=self.max_output_tokens,
            token_type=self.token_type,
            token_type_explicit=self.token_type_explicit,
            user=self.user,
            options=copy.deepcopy(self.options),
        )


def _text(parts: Any, param: str, *, role: str) -> str:
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        wrong_type(param, "a string or an array of content parts", parts)
    return text_parts_join(
        parts, param, kinds=TEXT_PARTS, unsupported=UNSUPPORTED_PARTS, allow_refusal=role == "assistant"
    )


def _function_call(item: dict, param: str) -> dict:
    call_id = get_str(item, "call_id", f"{param}.call_id", required=True, allow_empty=False)
    name = get_str(item, "name", f"{param}.name", required=True, allow_empty=False)
    arguments = get_str(item, "arguments", f"{param}.arguments", required=True)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _input_messages(raw: Any) -> tuple[list[dict], dict[int, str]]:
    """Chat messages from `input`, and the param of each function_call_output's call_id by message index."""
    if raw is None:
        missing("input")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}], {}
    if not isinstance(raw, list):
        wrong_type("input", "a string or an array of input items", raw)
    if len(raw) > MAX_MESSAGES:
        invalid(
            f"Invalid 'input': at most {MAX_MESSAGES} items are accepted.",
            param="input",
            code="array_above_max_length",
        )
    messages: list[dict] = []
    output_params: dict[int, str] = {}
    for i, item in enumerate(raw):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            wrong_type(param, "an object", item)
        kind = get_str(item, "type", f"{param}.type") or "message"
        if kind == "message":
            role = get_str(item, "role", f"{param}.role", required=True)
            if role not in ROLES:
                invalid(
                    f"Invalid value: '{role}'. Supported values are: {', '.join(repr(r) for r in ROLES)}.",
                    param=f"{param}.role",
                    code="invalid_value",
                )
            if item.get("content") is None:
                missing(f"{param}.content")
            content = _text(item["content"], f"{param}.content", role=role)
            messages.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "function_call":
            call = _function_call(item, param)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = get_str(item, "call_id", f"{param}.call_id", required=True, allow_empty=False)
            if item.get("output") is None:
                missing(f"{param}.output")
            output_params[len(messages)] = f"{param}.call_id"
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": _text(item["output"], f"{param}.output", role="tool"),
                }
            )
        elif kind != "reasoning":
            invalid(
                f"Invalid '{param}.type': '{kind}' items are not supported here. Expected 'message', "
                "'function_call', 'function_call_output' or 'reasoning'.",
                param=f"{param}.type",
                code="unsupported_value",
            )
    return messages, output_params


def _tools(body: dict) -> tuple[list[dict] | None, list[dict]]:
    """(chat tools for the engine, tools as the Response echoes them)."""
    chat_tools: list[dict] = []
    echoed: list[dict] = []
    names: set[str] = set()
    for param, tool, kind in tool_entries(body):
        if kind != "function":
            invalid(
                f"The '{kind}' tool ({param}) is not supported here: only 'function' tools are; built-in tools "
                "such as web_search, file_search, computer_use_preview, code_interpreter, image_generation and "
                "mcp are not available.",
                param="tools",
                code="unsupported_value",
            )
        spec = function_spec_check(tool, param, names)
        chat_tools.append({"type": "function", "function": spec})
        echoed.append(
            {
                "type": "function",
                "name": spec["name"],
                "description": spec.get("description"),
                "parameters": copy.deepcopy(spec.get("parameters")),
                "strict": spec.get("strict", True),
            }
        )
    return chat_tools or None, echoed


def _tool_choice(body: dict, names: set[str]) -> tuple[str | dict | None, str | dict]:
    """(chat tool_choice, tool_choice as the Response echoes it)."""
    choice = body.get("tool_choice")
    if choice is None:
        return None, "auto"
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            invalid(
                f"Invalid value: '{choice}'. Supported values are: 'none', 'auto' and 'required'.",
                param="tool_choice",
            )
        if choice == "required" and not names:
            invalid(
                "Invalid value for 'tool_choice': 'required' needs at least one tool in 'tools'.", param="tool_choice"
            )
        return (choice if names else None), choice
    if not isinstance(choice, dict):
        wrong_type("tool_choice", "a string or an object", choice)
    kind = get_str(choice, "type", "tool_choice.type", required=True)
    if kind != "function":
        unsupported("tool_choice.type", f"'{kind}' is not supported; name a function or use none/auto/required.")
    name = get_str(choice, "name", "tool_choice.name", required=True)
    if name not in names:
        invalid(
            f"Invalid value for 'tool_choice': no function named '{name}' was specified in 'tools'.",
            param="tool_choice",
        )
    return {"type": "function", "function": {"name": name}}, {"type": "function", "name": name}


def _text_format(body: dict) -> tuple[dict | None, dict]:
    """(chat response_format, `text` as the Response echoes it)."""
    text = get_object(body, "text", "text") or {}
    verbosity = get_str(text, "verbosity", "text.verbosity")
    echoed: dict = {"format": {"type": "text"}}
    if verbosity is not None:
        echoed["verbosity"] = verbosity
    value = get_object(text, "format", "text.format")
    if value is None:
        return None, echoed
    kind = get_str(value, "type", "text.format.type", required=True)
    if kind in ("text", "json_object"):
        echoed["format"] = {"type": kind}
        return {"type": kind}, echoed
    if kind != "json_schema":
        invalid(
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object' and 'json_schema'.",
            param="text.format.type",
        )
    name = function_name_check(get_str(value, "name", "text.format.name", required=True), "text.format.name")
    if value.get("schema") is None:
        missing("text.format.schema")
    spec: dict = {"name": name, "schema": json_schema_check(value["schema"], "text.format.schema", object_only=False)}
    description = get_str(value, "description", "text.format.description")
    if description is not None:
        spec["description"] = description
    strict = get_bool(value, "strict", "text.format.strict")
    if strict is not None:
        spec["strict"] = strict
    echoed["format"] = {"type": "json_schema", **copy.deepcopy(spec)}
    return {"type": "json_schema", "json_schema": spec}, echoed


def _reasoning(body: dict) -> tuple[dict | None, dict]:
    """(chat_template_kwargs for the effort, `reasoning` as the Response echoes it). An effort of none or
    minimal turns thinking off; any other turns it on; unset leaves the model's template to decide."""
    reasoning = get_object(body, "reasoning", "reasoning") or {}
    effort = get_str(reasoning, "effort", "reasoning.effort")
    if effort is not None and effort not in EFFORTS:
        invalid(
            f"Invalid value: '{effort}'. Supported values are: {', '.join(repr(e) for e in EFFORTS)}.",
            param="reasoning.effort",
        )
    summary = get_str(reasoning, "summary", "reasoning.summary")
    if summary is None:
        summary = get_str(reasoning, "generate_summary", "reasoning.generate_summary")
    if summary is not None and summary not in SUMMARIES:
        invalid(
            f"Invalid value: '{summary}'. Supported values are: 'auto', 'concise' and 'detailed'.",
            param="reasoning.summary",
        )
    kwargs = None if effort is None else {"enable_thinking": effort not in THINKING_OFF}
    return kwargs, {"effort": effort, "summary": summary}


def _refuse_unhonourable(body: dict) -> None:
    if get_bool(body, "background", "background"):
        unsupported("background", "is not supported: responses are answered while the request waits.")
    for name in ("conversation", "prompt"):
        if body.get(name) is not None:
            unsupported(name, "is not supported by this service; send 'input' (and 'previous_response_id').")
    for i, value in enumerate(get_list(body, "include", "include") or ()):
        if not isinstance(value, str):
            wrong_type(f"include[{i}]", "a string", value)
        if value == LOGPROBS_INCLUDE:
            invalid(
                f"Invalid 'include[{i}]': '{value}' is not supported: the engine cannot return log probabilities.",
                param=f"include[{i}]",
                code="unsupported_value",
            )
    if get_int(body, "top_logprobs", "top_logprobs", minimum=0, maximum=20):
        unsupported("top_logprobs", "is not supported: the engine cannot return log probabilities.")
    truncation = get_str(body, "truncation", "truncation")
    if truncation not in (None, "disabled"):
        invalid(
            "Invalid value for 'truncation': only 'disabled' is supported; a prompt that does not fit the "
            "context window is refused.",
            param="truncation",
            code="unsupported_value",
        )


def _check_ignored(body: dict) -> dict:
    """Fields that do not change the answer here: typed, and the metadata echoed."""
    metadata = get_object(body, "metadata", "metadata") or {}
    for key, value in metadata.items():
        if not isinstance(value, str):
            wrong_type(f"metadata.{key}", "a string", value)
    get_int(body, "max_tool_calls", "max_tool_calls", minimum=0)
    for name in ("service_tier", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"):
        get_str(body, name, name)
    stream_options = get_object(body, "stream_options", "stream_options") or {}
    get_bool(stream_options, "include_obfuscation", "stream_options.include_obfuscation")
    return metadata


def parse_responses_request(
    raw_body: bytes, *, content_type: str | None, headers: Mapping[str, str]
) -> ResponsesRequest:
    """CreateResponse validated; every refusal is a 400 naming its param, before any job or hold."""
    if len(raw_body) <= settings.MAX_REQUEST_BYTES:  # 413 first, as for chat completions
        content_type_check(content_type)
    body = json_body_load(raw_body)
    input_messages, output_params = _input_messages(body.get("input"))
    _refuse_unhonourable(body)
    metadata = _check_ignored(body)
    instructions = get_str(body, "instructions", "instructions")
    chat_tools, tools = _tools(body)
    tool_choice, echoed_choice = _tool_choice(body, {tool["name"] for tool in tools})
    response_format, text = _text_format(body)
    thinking, reasoning = _reasoning(body)
    parallel = get_bool(body, "parallel_tool_calls", "parallel_tool_calls")
    options: dict[str, Any] = {name: sampling_value(body, name) for name in ("temperature", "top_p", *EXTENSIONS)}
    options |= {
        "top_k": get_int(body, "top_k", "top_k", minimum=0),
        "seed": get_int(body, "seed", "seed", minimum=INT64_MIN, maximum=INT64_MAX),
        "tools": chat_tools,
        "tool_choice": tool_choice,
        "parallel_tool_calls": parallel if chat_tools else None,
        "response_format": response_format,
        "chat_template_kwargs": thinking,
    }
    token_type = token_type_read(body, headers)
    return ResponsesRequest(
        input_messages=input_messages,
        output_params=output_params,
        model=get_str(body, "model", "model", allow_empty=False),
        stream=bool(get_bool(body, "stream", "stream")),
        store=get_bool(body, "store", "store") is not False,
        previous_response_id=get_str(body, "previous_response_id", "previous_response_id", allow_empty=False),
        max_output_tokens=get_int(body, "max_output_tokens", "max_output_tokens", minimum=1),
        token_type=token_type or "auto",
        token_type_explicit=token_type is not None,
        user=get_str(body, "user", "user"),
        options={name: value for name, value in options.items() if value is not None},
        echo={
            "instructions": instructions,
            "tools": tools,
            "tool_choice": echoed_choice,
            "text": text,
            "reasoning": reasoning,
            "parallel_tool_calls": True if parallel is None else parallel,
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "metadata": metadata,
            "user": body.get("user"),
        },
    )
