"""Tools, tool_choice and response_format: validated and normalised for the engine."""

import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from inference.openai.checks import get_bool, get_list, get_object, get_str, invalid, missing, unsupported, wrong_type

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 128


def function_name_check(value: str, param: str) -> str:
    if not NAME_PATTERN.match(value):
        invalid(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches the pattern "
            "'^[a-zA-Z0-9_-]{1,64}$'.",
            param=param,
            code="invalid_value",
        )
    return value


def json_schema_check(value: Any, param: str, *, object_only: bool) -> dict:
    if not isinstance(value, dict):
        wrong_type(param, "an object (a JSON Schema)", value)
    if object_only and value.get("type", "object") != "object":
        invalid(
            f"Invalid '{param}': a function's parameters must be a JSON Schema of type 'object'.",
            param=param,
            code="invalid_value",
        )
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        invalid(
            f"Invalid '{param}': not a valid JSON Schema at {where}: {error.message}", param=param, code="invalid_value"
        )
    return value


def tool_entries(body: dict) -> Iterator[tuple[str, dict, str]]:
    """(param, tool, type) of each entry of `tools` in turn, each checked to be an object with a type."""
    tools = get_list(body, "tools", "tools")
    if not tools:
        return
    if len(tools) > MAX_TOOLS:
        invalid(
            f"Invalid 'tools': at most {MAX_TOOLS} tools are accepted.", param="tools", code="array_above_max_length"
        )
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            wrong_type(param, "an object", tool)
        yield param, tool, get_str(tool, "type", f"{param}.type", required=True)


def function_spec_check(function: dict, param: str, names: set[str]) -> dict:
    """A function tool's chat spec (name, and description, parameters, strict when given) from `function`
    at `param`; its name must not be in `names`, and is added to it."""
    name = function_name_check(get_str(function, "name", f"{param}.name", required=True), f"{param}.name")
    if name in names:
        invalid(f"Invalid '{param}.name': duplicate tool name '{name}'.", param=f"{param}.name", code="invalid_value")
    names.add(name)
    spec: dict = {"name": name}
    description = get_str(function, "description", f"{param}.description")
    if description is not None:
        spec["description"] = description
    if function.get("parameters") is not None:
        spec["parameters"] = json_schema_check(function["parameters"], f"{param}.parameters", object_only=True)
    strict = get_bool(function, "strict", f"{param}.strict")
    if strict is not None:
        spec["strict"] = strict
    return spec


def normalise_tools(body: dict) -> list[dict] | None:
    out: list[dict] = []
    names: set[str] = set()
    for param, tool, kind in tool_entries(body):
        if kind != "function":
            invalid(
                f"Invalid '{param}.type': only 'function' tools are supported.",
                param=f"{param}.type",
                code="unsupported_value",
            )
        function = get_object(tool, "function", f"{param}.function")
        if function is None:
            missing(f"{param}.function")
        out.append({"type": "function", "function": function_spec_check(function, f"{param}.function", names)})
    return out or None


def normalise_tool_choice(body: dict, tools: list[dict] | None) -> str | dict | None:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    names = {tool["function"]["name"] for tool in tools or []}
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            invalid(
                f"Invalid value: '{choice}'. Supported values are: 'none', 'auto' and 'required'.",
                param="tool_choice",
                code="invalid_value",
            )
        if choice == "required" and not names:
            invalid(
                "Invalid value for 'tool_choice': 'required' needs at least one tool in 'tools'.",
                param="tool_choice",
                code="invalid_value",
            )
        return choice if names else None
    if not isinstance(choice, dict):
        wrong_type("tool_choice", "a string or an object", choice)
    kind = get_str(choice, "type", "tool_choice.type", required=True)
    if kind in ("allowed_tools", "custom"):
        unsupported("tool_choice.type", f"'{kind}' is not supported; name a function or use none/auto/required.")
    if kind != "function":
        invalid(
            f"Invalid 'tool_choice.type': '{kind}'. Expected 'function'.",
            param="tool_choice.type",
            code="invalid_value",
        )
    function = get_object(choice, "function", "tool_choice.function")
    if function is None:
        missing("tool_choice.function")
    name = get_str(function, "name", "tool_choice.function.name", required=True)
    if name not in names:
        invalid(
            f"Invalid value for 'tool_choice': no function named '{name}' was specified in 'tools'.",
            param="tool_choice",
            code="invalid_value",
        )
    return {"type": "function", "function": {"name": name}}


def normalise_response_format(body: dict) -> dict | None:
    value = get_object(body, "response_format", "response_format")
    if value is None:
        return None
    kind = get_str(value, "type", "response_format.type", required=True)
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        invalid(
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object' and 'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    spec = get_object(value, "json_schema", "response_format.json_schema")
    if spec is None:
        missing("response_format.json_schema")
    name = get_str(spec, "name", "response_format.json_schema.name", required=True)
    out: dict = {"name": function_name_check(name, "response_format.json_schema.name")}
    description = get_str(spec, "description", "response_format.json_schema.description")
    if description is not None:
        out["description"] = description
    if spec.get("schema") is not None:
        out["schema"] = json_schema_check(spec["schema"], "response_format.json_schema.schema", object_only=False)
    strict = get_bool(spec, "strict", "response_format.json_schema.strict")
    if strict is not None:
        out["strict"] = strict
    return {"type": "json_schema", "json_schema": out}
