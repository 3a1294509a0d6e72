"""The platform's OpenAPI document, GET /v1/openapi.json (drf-spectacular plus a postprocessing hook).

DRF views are introspected; the hook adds what introspection cannot see: response bodies of views
without serializers, OpenAI-shaped errors, and the async POST /v1/chat/completions and Responses API
operations (not DRF views; sogni_platform.openapi_responses), described by hand from trimmed copies
of the OpenAI schemas (../shared/openai/openapi.json), kept here as data so the document is
self-contained at run time. Operations are only documented when their URL exists in this build.
"""

import copy

from django.urls import Resolver404, resolve
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularJSONAPIView
from rest_framework.permissions import AllowAny

from sogni_platform.openapi_responses import RESPONSES_OPERATIONS, RESPONSES_SCHEMAS
from sogni_platform.openapi_schemas import (
    CHAT_COMPLETIONS_PATH,
    CHAT_COMPLETIONS_POST,
    ERROR_STATUSES,
    OPERATION_ERRORS,
    OPERATION_IDS,
    OPERATION_RESPONSES,
    SCHEMAS,
)

SECURITY_SCHEME = "ApiKeyAuth"
SECURITY_DEFINITION = {
    "type": "http",
    "scheme": "bearer",
    "description": "Your API key from the dashboard: `Authorization: Bearer sk-sogni-...` "
    "(the `api-key` header is accepted too).",
}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = SECURITY_SCHEME

    def get_security_definition(self, auto_schema):
        return dict(SECURITY_DEFINITION)


class OpenApiDocumentView(SpectacularJSONAPIView):
    """Public: the document describes the API, it grants nothing."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


def _error_response(status: str) -> dict:
    return {
        "description": ERROR_STATUSES[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def _url_exists(path: str) -> bool:
    try:
        resolve(path)
        return True
    except Resolver404:
        return False


REQUEST_ID_PARAMETER = {
    "name": "x-request-id",
    "in": "header",
    "required": False,
    "description": "Your id for this request (up to 64 of A-Z a-z 0-9 . _ -), echoed in the response and "
    "logged; otherwise the platform makes one.",
    "schema": {"type": "string"},
}

REQUEST_ID_HEADER = {"description": "This request's id, in every log line about it.", "schema": {"type": "string"}}


def postprocess(result, generator, request, public):
    """drf-spectacular postprocessing hook: complete the introspected document."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(copy.deepcopy(SCHEMAS))
    paths = result.setdefault("paths", {})
    if _url_exists(CHAT_COMPLETIONS_PATH):
        paths.setdefault(CHAT_COMPLETIONS_PATH, {})["post"] = copy.deepcopy(CHAT_COMPLETIONS_POST)
        components.setdefault("securitySchemes", {}).setdefault(SECURITY_SCHEME, dict(SECURITY_DEFINITION))
    for path, operations in RESPONSES_OPERATIONS.items():
        if _url_exists(path):
            components["schemas"].update(copy.deepcopy(RESPONSES_SCHEMAS))
            paths.setdefault(path, {}).update(copy.deepcopy(operations))
            components.setdefault("securitySchemes", {}).setdefault(SECURITY_SCHEME, dict(SECURITY_DEFINITION))
    for path, operations in paths.items():
        for method, operation in operations.items():
            _complete(path, method, operation)
    return result


def _complete(path: str, method: str, operation: dict) -> None:
    if (path, method) in OPERATION_IDS:
        operation["operationId"] = OPERATION_IDS[(path, method)]
    responses = operation.setdefault("responses", {})
    if (path, method) in OPERATION_RESPONSES:
        for status in [status for status in responses if status.startswith("2")]:
            del responses[status]
        responses.update(copy.deepcopy(OPERATION_RESPONSES[(path, method)]))
    statuses = OPERATION_ERRORS.get((path, method), ())
    secured = bool(operation.get("security"))
    if secured:
        statuses = ("401", "429", *statuses)
    for status in statuses:
        responses.setdefault(status, _error_response(status))
    for response in responses.values():
        response.setdefault("headers", {}).setdefault("x-request-id", REQUEST_ID_HEADER)
    parameters = operation.setdefault("parameters", [])
    if not any(p.get("name") == "x-request-id" for p in parameters):
        parameters.append(REQUEST_ID_PARAMETER)
