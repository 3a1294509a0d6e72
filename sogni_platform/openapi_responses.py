"""The Responses API in the platform's OpenAPI document: POST /v1/responses and GET / DELETE
/v1/responses/{response_id}, described by hand (they are not DRF views) from trimmed copies of
OpenAI's CreateResponse and Response schemas, as data. OpenAPI 3.0 (`nullable: true`)."""

from sogni_platform.openapi_schemas import ERROR_STATUSES, INT64, NAME, TEXT, closed_object

NULLABLE_BOOLEAN = {"type": "boolean", "nullable": True}

INPUT_MESSAGE = closed_object(
    {
        "type": {"type": "string", "enum": ["message"]},
        "role": {"type": "string", "enum": ["user", "system", "developer", "assistant"]},
        "content": TEXT,
    },
    ["role", "content"],
)

FUNCTION_TOOL = closed_object(
    {
        "type": {"type": "string", "enum": ["function"]},
        "name": NAME,
        "description": TEXT,
        "parameters": {
            "type": "object",
            "description": "A JSON Schema (an object schema) for the arguments.",
            "properties": {"type": {"type": "string", "enum": ["object"]}},
            "additionalProperties": False,
        },
        "strict": {"type": "boolean"},
    },
    ["type", "name"],
)

CREATE_RESPONSE = {
    "type": "object",
    "description": "Unknown top-level fields are ignored; built-in tools and fields that would change the "
    "answer but cannot be honoured here (background, include of logprobs, ...) are refused with 400.",
    "properties": {
        "model": {**TEXT, "minLength": 1, "description": "A model id from GET /v1/models (default: the platform's)."},
        "input": {
            "oneOf": [
                {**TEXT, "description": "One user message."},
                {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ResponseInputMessage"}},
            ]
        },
        "instructions": {**TEXT, "nullable": True},
        "max_output_tokens": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1, "nullable": True},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": True},
        "top_p": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1, "nullable": True},
        "seed": {**INT64, "nullable": True},
        "stream": NULLABLE_BOOLEAN,
        "store": NULLABLE_BOOLEAN,
        "previous_response_id": {**TEXT, "minLength": 1, "nullable": True},
        "tools": {"type": "array", "maxItems": 16, "items": {"$ref": "#/components/schemas/ResponseFunctionTool"}},
        "tool_choice": {"type": "string", "enum": ["none", "auto"]},
        "parallel_tool_calls": NULLABLE_BOOLEAN,
        "text": closed_object(
            {"format": closed_object({"type": {"type": "string", "enum": ["text", "json_object"]}}, ["type"])}, []
        ),
        "reasoning": closed_object(
            {
                "effort": {"type": "string", "enum": ["none", "minimal", "low", "medium", "high"], "nullable": True},
                "summary": {"type": "string", "enum": ["auto", "concise", "detailed"], "nullable": True},
            },
            [],
        ),
        "metadata": {"type": "object", "additionalProperties": TEXT, "maxProperties": 16},
        "user": TEXT,
        "token_type": {
            "type": "string",
            "enum": ["spark", "sogni", "auto"],
            "description": "Which wallet pays (Sogni extension; also the X-Token-Type header).",
        },
    },
    "required": ["input"],
    "additionalProperties": False,
}

RESPONSE = {
    "type": "object",
    "description": "OpenAI's response object; `usage` adds `cost` (what was charged).",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["response"]},
        "created_at": {"type": "integer"},
        "status": {"type": "string", "enum": ["completed", "incomplete", "failed", "in_progress"]},
        "model": {"type": "string"},
        "output": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"type": {"type": "string", "enum": ["message", "function_call", "reasoning"]}},
                "required": ["type"],
            },
        },
        "previous_response_id": {"type": "string", "nullable": True},
        "store": {"type": "boolean"},
        "usage": {
            "type": "object",
            "properties": {
                "input_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
            },
            "required": ["input_tokens", "output_tokens", "total_tokens"],
        },
    },
    "required": ["id", "object", "created_at", "status", "model", "output"],
}

DELETED_RESPONSE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["response"]},
        "deleted": {"type": "boolean", "enum": [True]},
    },
    "required": ["id", "object", "deleted"],
}

RESPONSES_SCHEMAS = {
    "ResponseInputMessage": INPUT_MESSAGE,
    "ResponseFunctionTool": FUNCTION_TOOL,
    "CreateResponse": CREATE_RESPONSE,
    "Response": RESPONSE,
    "DeletedResponse": DELETED_RESPONSE,
}


def _errors(*statuses: str) -> dict:
    return {
        status: {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }
        for status in statuses
    }


def _json(ref: str, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


RESPONSE_ID = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The response's id (resp_...).",
}

# Operations by path; 401 and 429 are added to each by sogni_platform.openapi, as to every secured one.
RESPONSES_OPERATIONS = {
    "/v1/responses": {
        "post": {
            "operationId": "createResponse",
            "summary": "Create a response (OpenAI's Responses API; `stream: true` answers with server-sent events).",
            "tags": ["responses"],
            "security": [{"ApiKeyAuth": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateResponse"}}},
            },
            "responses": {
                "200": {
                    "description": "The response, or (stream) its events, `response.created` to `response.completed`.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Response"}},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                **_errors("400", "402", "404", "413", "415", "503"),
            },
        }
    },
    "/v1/responses/{response_id}": {
        "get": {
            "operationId": "getResponse",
            "summary": "A stored response, as it was answered.",
            "tags": ["responses"],
            "security": [{"ApiKeyAuth": []}],
            "parameters": [RESPONSE_ID],
            "responses": {"200": _json("#/components/schemas/Response"), **_errors("404")},
        },
        "delete": {
            "operationId": "deleteResponse",
            "summary": "Delete a stored response.",
            "tags": ["responses"],
            "security": [{"ApiKeyAuth": []}],
            "parameters": [RESPONSE_ID],
            "responses": {"200": _json("#/components/schemas/DeletedResponse"), **_errors("404")},
        },
    },
}
