"""Chat messages: validate OpenAI's message shapes and normalise them to the worker protocol's.

Normalised messages have plain-text content: developer becomes system, text parts are joined with
a newline, assistant messages keep their tool_calls, tool messages keep their tool_call_id. The
optional `name` is dropped (the protocol does not carry it).
"""

from typing import Any

from inference.openai.checks import get_list, get_str, invalid, missing, unsupported, wrong_type

MAX_MESSAGES = 4096
ROLES = ("system", "developer", "user", "assistant", "tool")
UNSUPPORTED_PARTS = {
    "image_url": "image inputs are not supported by the open-weights models served here",
    "input_audio": "audio inputs are not supported by the open-weights models served here",
    "file": "file inputs are not supported by the open-weights models served here",
}


def text_parts_join(
    parts: list, param: str, *, kinds: tuple[str, ...], unsupported: dict[str, str], allow_refusal: bool
) -> str:
    """The text of content parts of the given `kinds`, joined by a newline; refusal parts are checked and skipped."""
    texts = []
    for j, part in enumerate(parts):
        part_param = f"{param}[{j}]"
        if not isinstance(part, dict):
            wrong_type(part_param, "an object", part)
        kind = get_str(part, "type", f"{part_param}.type", required=True)
        if kind in unsupported:
            invalid(
                f"Invalid '{part_param}.type': {unsupported[kind]}.",
                param=f"{part_param}.type",
                code="unsupported_value",
            )
        if kind == "refusal" and allow_refusal:
            get_str(part, "refusal", f"{part_param}.refusal", required=True)
            continue
        if kind not in kinds:
            expected = " or ".join(f"'{k}'" for k in kinds)
            invalid(
                f"Invalid '{part_param}.type': unknown content part type '{kind}'. Expected {expected}.",
                param=f"{part_param}.type",
                code="invalid_value",
            )
        texts.append(get_str(part, "text", f"{part_param}.text", required=True))
    return "\n".join(texts)


def _text_parts(parts: list, param: str, *, allow_refusal: bool = False) -> str:
    if not parts:
        invalid(
            f"Invalid '{param}': empty array. Expected an array with minimum length 1.", param=param, code="empty_array"
        )
    return text_parts_join(parts, param, kinds=("text",), unsupported=UNSUPPORTED_PARTS, allow_refusal=allow_refusal)


def _content(message: dict, param: str, *, required: bool = True, allow_refusal: bool = False) -> str | None:
    value = message.get("content")
    if value is None:
        if required:
            missing(param)
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _text_parts(value, param, allow_refusal=allow_refusal)
    wrong_type(param, "a string or an array of content parts", value)


def _tool_calls(message: dict, param: str) -> list[dict]:
    calls = get_list(message, "tool_calls", param)
    if not calls:
        return []
    out = []
    for k, call in enumerate(calls):
        call_param = f"{param}[{k}]"
        if not isinstance(call, dict):
            wrong_type(call_param, "an object", call)
        call_id = get_str(call, "id", f"{call_param}.id", required=True, allow_empty=False)
        kind = get_str(call, "type", f"{call_param}.type", required=True)
        if kind != "function":
            invalid(
                f"Invalid '{call_param}.type': only 'function' tool calls are supported.",
                param=f"{call_param}.type",
                code="unsupported_value",
            )
        function = call.get("function")
        if not isinstance(function, dict):
            if function is None:
                missing(f"{call_param}.function")
            wrong_type(f"{call_param}.function", "an object", function)
        name = get_str(function, "name", f"{call_param}.function.name", required=True, allow_empty=False)
        arguments = get_str(function, "arguments", f"{call_param}.function.arguments", required=True)
        out.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    return out


def normalise_messages(raw: Any) -> list[dict]:
    if raw is None:
        missing("messages")
    if not isinstance(raw, list):
        wrong_type("messages", "an array", raw)
    if not raw:
        invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    if len(raw) > MAX_MESSAGES:
        invalid(
            f"Invalid 'messages': at most {MAX_MESSAGES} messages are accepted.",
            param="messages",
            code="array_above_max_length",
        )
    out: list[dict] = []
    open_tool_calls: set[str] = set()
    for i, message in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            wrong_type(param, "an object", message)
        role = get_str(message, "role", f"{param}.role", required=True)
        if role == "function":
            unsupported(f"{param}.role", "(the deprecated 'function' role) is not supported; use 'tool' messages.")
        if role not in ROLES:
            invalid(
                f"Invalid value: '{role}'. Supported values are: {', '.join(repr(r) for r in ROLES)}.",
                param=f"{param}.role",
                code="invalid_value",
            )
        get_str(message, "name", f"{param}.name")
        if role in ("system", "developer", "user"):
            out.append(
                {"role": "system" if role == "developer" else role, "content": _content(message, f"{param}.content")}
            )
        elif role == "assistant":
            if message.get("function_call") is not None:
                unsupported(f"{param}.function_call", "is deprecated and not supported; use 'tool_calls'.")
            if message.get("audio") is not None:
                unsupported(f"{param}.audio", "is not supported: the models served here have no audio.")
            get_str(message, "refusal", f"{param}.refusal")
            content = _content(message, f"{param}.content", required=False, allow_refusal=True)
            calls = _tool_calls(message, f"{param}.tool_calls")
            if content is None and not calls:
                missing(f"{param}.content")
            normalised: dict[str, Any] = {"role": "assistant", "content": content or ""}
            if calls:
                normalised["tool_calls"] = calls
                open_tool_calls = {call["id"] for call in calls}
            out.append(normalised)
        else:
            call_id = get_str(message, "tool_call_id", f"{param}.tool_call_id", required=True, allow_empty=False)
            if call_id not in open_tool_calls:
                invalid(
                    f"Invalid '{param}.tool_call_id': '{call_id}' does not answer a tool call of a preceding "
                    "assistant message.",
                    param=f"{param}.tool_call_id",
                    code="invalid_value",
                )
            out.append({"role": "tool", "tool_call_id": call_id, "content": _content(message, f"{param}.content")})
    return out
