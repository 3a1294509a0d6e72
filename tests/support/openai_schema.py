"""Conformance checks against OpenAI's spec in ../shared/openai/openapi.json (never copied here).

The spec marks nullable fields OpenAPI-3.0 style (`nullable: true`); they become JSON-Schema
nulls before validating with Draft 2020-12, $refs are resolved through a referencing Registry.
"""

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / ".." / "shared" / "openai" / "openapi.json"
SPEC_URI = "urn:openai:openapi"
SCHEMAS = (
    "CreateChatCompletionRequest",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
)
_COMBINATORS = ("$ref", "allOf", "anyOf", "oneOf")


def nullable_to_json_schema(node: Any) -> Any:
    """Rewrite every `nullable: true` into a JSON-Schema null, recursively."""
    if isinstance(node, list):
        return [nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: nullable_to_json_schema(value) for key, value in node.items()}
    if not node.pop("nullable", False):
        return node
    if isinstance(node.get("type"), str) and not any(key in node for key in _COMBINATORS):
        node["type"] = [node["type"], "null"]
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        return node
    # $ref, allOf, oneOf, anyOf (or no type at all): allow null beside whatever the node says.
    return {"anyOf": [node, {"type": "null"}]}


@cache
def spec() -> dict:
    return nullable_to_json_schema(json.loads(SPEC_PATH.read_text()))


@cache
def _validator(schema_name: str) -> Draft202012Validator:
    if schema_name not in spec()["components"]["schemas"]:
        raise KeyError(schema_name)
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec(), default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}, registry=registry)


def errors(schema_name: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in _validator(schema_name).iter_errors(instance)
    ]


def validate(schema_name: str, instance: Any) -> None:
    """Raise AssertionError listing every violation of the named component schema."""
    problems = errors(schema_name, instance)
    assert not problems, f"not a valid {schema_name}:\n" + "\n".join(problems)
