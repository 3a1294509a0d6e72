"""Every API error leaves as OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response


class ApiError(Exception):
    """An error the API reports to the client; raise it from services and views."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.code
        self.status = status or self.status
        self.type = type or self.type
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


class InvalidApiKey(ApiError):
    status = 401
    code = "invalid_api_key"


class NotFound(ApiError):
    status = 404


class InsufficientBalance(ApiError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_balance"

    def __init__(self, message: str, **kwargs):
        super().__init__(message, **kwargs)
        self.headers.setdefault("x-should-retry", "false")


class ServiceUnavailable(ApiError):
    status = 503
    type = "service_unavailable"


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def api_exception_handler(exc, context):
    """DRF's exception handler, speaking OpenAI's error shape."""
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        error = InvalidApiKey(str(exc.detail))
    elif isinstance(exc, drf_exceptions.NotFound):
        error = NotFound(str(exc.detail))
    elif isinstance(exc, drf_exceptions.MethodNotAllowed):
        error = ApiError(str(exc.detail), status=405, code="method_not_allowed")
    elif isinstance(exc, drf_exceptions.UnsupportedMediaType):
        error = ApiError(str(exc.detail), status=415, code="unsupported_media_type")
    elif isinstance(exc, drf_exceptions.ParseError):
        error = ApiError(str(exc.detail), code="invalid_json")
    elif isinstance(exc, drf_exceptions.Throttled):
        error = ApiError(str(exc.detail), status=429, type="rate_limit_error", code="rate_limit_exceeded")
    elif isinstance(exc, drf_exceptions.PermissionDenied):
        error = ApiError(str(exc.detail), status=403, type="permission_error")
    elif isinstance(exc, drf_exceptions.APIException):
        error = ApiError(str(exc.detail), status=exc.status_code)
    else:
        return None
    response = Response(error.body(), status=error.status, headers=error.headers)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
