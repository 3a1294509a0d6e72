"""Schemas for the API document, trimmed from the OpenAI spec (../shared/openai/openapi.json) to what
this service accepts and returns; OpenAPI 3.0 (`nullable: true`), like the rest of the document."""

NULLABLE_STRING = {"type": "string", "nullable": True}

ERROR_STATUSES = {
    "400": "Invalid request (OpenAI-shaped error naming the param).",
    "401": "Missing, invalid or disabled API key.",
    "402": "Insufficient balance for the request's worst-case cost.",
    "404": "Not found.",
    "413": "Request body too large.",
    "415": "Content-Type is not application/json.",
    "429": "Rate limit reached (requests or tokens per minute); see Retry-After.",
    "503": "No worker serves the model right now; see Retry-After.",
}

ERROR = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "type": {"type": "string"},
        "param": NULLABLE_STRING,
        "code": NULLABLE_STRING,
    },
    "required": ["message", "type", "param", "code"],
}

MODEL = {
    "type": "object",
    "description": "A model offered by the network.",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["model"]},
        "created": {"type": "integer", "description": "Unix seconds."},
        "owned_by": {"type": "string"},
    },
    "required": ["id", "object", "created", "owned_by"],
}

DECIMAL = {"type": "string", "description": "Exact decimal, plain notation.", "pattern": r"^-?\d+(\.\d+)?$"}

WALLET = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "enum": ["wallet"]},
        "token_type": {"type": "string", "enum": ["spark", "sogni"]},
        "balance": DECIMAL,
        "held": DECIMAL,
        "available": DECIMAL,
        "usd_per_token": {**DECIMAL, "nullable": True},
        "usd": {
            "type": "object",
            "properties": {name: {**DECIMAL, "nullable": True} for name in ("balance", "held", "available")},
        },
    },
    "required": ["object", "token_type", "balance", "held", "available"],
}

# Strings the parser accepts: JSON text without NUL characters.
TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}
NAME = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}


def closed_object(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


CONTENT_PART = closed_object({"type": {"type": "string", "enum": ["text"]}, "text": TEXT}, ["type", "text"])
CONTENT = {"oneOf": [TEXT, {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ContentPart"}}]}

TOOL_CALL = closed_object(
    {
        "id": {**TEXT, "minLength": 1},
        "type": {"type": "string", "enum": ["function"]},
        "function": closed_object({"name": NAME, "arguments": TEXT}, ["name", "arguments"]),
    },
    ["id", "type", "function"],
)

# One shape per role, as OpenAI's ChatCompletionRequestMessage.
CHAT_MESSAGE = {
    "oneOf": [
        closed_object(
            {"role": {"type": "string", "enum": ["system", "developer", "user"]}, "content": CONTENT},
            ["role", "content"],
        ),
        closed_object(
            {
                "role": {"type": "string", "enum": ["assistant"]},
                "content": {**CONTENT, "nullable": True},
                "tool_calls": {"type": "array", "items": {"$ref": "#/components/schemas/ToolCall"}},
            },
            ["role"],
        ),
        closed_object(
            {
                "role": {"type": "string", "enum": ["tool"]},
                "content": CONTENT,
                "tool_call_id": {**TEXT, "minLength": 1},
            },
            ["role", "content", "tool_call_id"],
        ),
    ]
}

TOOL = closed_object(
    {
        "type": {"type": "string", "enum": ["function"]},
        "function": closed_object(
            {
                "name": NAME,
                "description": TEXT,
                "parameters": {
                    "type": "object",
                    "description": "A JSON Schema (an object schema) for the arguments.",
                    "properties": {"type": {"type": "string", "enum": ["object"]}},
                    "additionalProperties": False,
                },
            },
            ["name"],
        ),
    },
    ["type", "function"],
)

INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}

CHAT_REQUEST = {
    "type": "object",
    "description": "Unknown top-level fields are ignored; fields that would change the answer but cannot be "
    "honoured here (n > 1, audio, logprobs, logit_bias, ...) are refused with 400.",
    "properties": {
        "model": {**TEXT, "minLength": 1, "description": "A model id from GET /v1/models (default: the platform's)."},
        "messages": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ChatMessage"}},
        "stream": {"type": "boolean", "nullable": True},
        "stream_options": {
            "type": "object",
            "nullable": True,
            "properties": {"include_usage": {"type": "boolean"}},
            "additionalProperties": False,
        },
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1, "nullable": True},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1, "nullable": True},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": True},
        "top_p": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1, "nullable": True},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2, "nullable": True},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2, "nullable": True},
        "stop": {
            "nullable": True,
            "oneOf": [
                {**TEXT, "minLength": 1},
                {"type": "array", "items": {**TEXT, "minLength": 1}, "maxItems": 4},
            ],
        },
        "seed": {**INT64, "nullable": True},
        "n": {"type": "integer", "enum": [1], "nullable": True},
        "tools": {"type": "array", "maxItems": 16, "items": {"$ref": "#/components/schemas/Tool"}},
        "tool_choice": {"type": "string", "enum": ["none", "auto"]},
        "response_format": closed_object({"type": {"type": "string", "enum": ["text", "json_object"]}}, ["type"]),
        "user": TEXT,
        "token_type": {
            "type": "string",
            "enum": ["spark", "sogni", "auto"],
            "description": "Which wallet pays (Sogni extension; also the X-Token-Type header).",
        },
    },
    "required": ["messages"],
    "additionalProperties": False,
}

USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
}

CHAT_RESPONSE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string", "enum": ["assistant"]},
                            "content": NULLABLE_STRING,
                            "reasoning_content": NULLABLE_STRING,
                            "tool_calls": {"type": "array", "items": {"$ref": "#/components/schemas/ToolCall"}},
                        },
                        "required": ["role", "content"],
                    },
                    "finish_reason": {"type": "string", "enum": ["stop", "length", "tool_calls"], "nullable": True},
                },
                "required": ["index", "message", "finish_reason"],
            },
        },
        "usage": {"$ref": "#/components/schemas/Usage"},
    },
    "required": ["id", "object", "created", "model", "choices"],
}

SCHEMAS = {
    "Error": ERROR,
    "ErrorResponse": {
        "type": "object",
        "properties": {"error": {"$ref": "#/components/schemas/Error"}},
        "required": ["error"],
    },
    "Model": MODEL,
    "ListModelsResponse": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
        },
        "required": ["object", "data"],
    },
    "Wallet": WALLET,
    "AccountBalance": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["account.balance"]},
            "default_token_type": {"type": "string"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Wallet"}},
        },
        "required": ["object", "data"],
    },
    "ContentPart": CONTENT_PART,
    "ToolCall": TOOL_CALL,
    "Tool": TOOL,
    "ChatMessage": CHAT_MESSAGE,
    "CreateChatCompletionRequest": CHAT_REQUEST,
    "Usage": USAGE,
    "CreateChatCompletionResponse": CHAT_RESPONSE,
}


def _json(ref: str, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


# 2xx responses of operations whose views have no serializer to introspect.
OPERATION_RESPONSES = {
    ("/v1/models", "get"): {"200": _json("#/components/schemas/ListModelsResponse")},
    ("/v1/models/{model_id}", "get"): {"200": _json("#/components/schemas/Model")},
    ("/v1/account/balance", "get"): {"200": _json("#/components/schemas/AccountBalance")},
}

OPERATION_IDS = {
    ("/v1/models", "get"): "listModels",
    ("/v1/models/{model_id}", "get"): "retrieveModel",
    ("/v1/account/balance", "get"): "getAccountBalance",
}

# Errors beyond 401/429 (added to every operation that needs a key).
OPERATION_ERRORS = {
    ("/v1/models/{model_id}", "get"): ("404",),
    ("/v1/chat/completions", "post"): ("400", "402", "404", "413", "415", "503"),
}

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"

CHAT_COMPLETIONS_POST = {
    "operationId": "createChatCompletion",
    "summary": "Create a chat completion (OpenAI-compatible; `stream: true` answers with server-sent events).",
    "tags": ["chat"],
    "security": [{"ApiKeyAuth": []}],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateChatCompletionRequest"}}},
    },
    "responses": {
        "200": {
            "description": "The completion, or (stream) a sequence of `chat.completion.chunk` events then `[DONE]`.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CreateChatCompletionResponse"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    },
}
