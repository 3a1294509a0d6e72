"""POST /v1/chat/completions: authenticate, parse, open the job, stream or collect its answer."""

import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.authentication import INVALID_KEY, MISSING_KEY
from accounts.selectors import api_key_authenticate, api_key_from_headers
from inference.chat import ChatSession
from inference.openai.requests import parse_chat_request
from sogni_platform.exceptions import ApiError, InvalidApiKey, error_response


def _user(headers):
    raw_key = api_key_from_headers(headers)
    if raw_key is None:
        raise InvalidApiKey(MISSING_KEY)
    api_key = api_key_authenticate(raw_key)
    if api_key is None:
        raise InvalidApiKey(INVALID_KEY)
    return api_key.user


async def _chat_completion(request):
    if request.method != "POST":
        raise ApiError(
            f"Method {request.method} not allowed; use POST.",
            status=405,
            code="method_not_allowed",
            headers={"Allow": "POST"},
        )
    user = await sync_to_async(_user)(request.headers)
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            f"The request body is larger than the limit of {settings.MAX_REQUEST_BYTES} bytes.",
            status=413,
            code="request_too_large",
        ) from None
    chat = parse_chat_request(body, content_type=request.META.get("CONTENT_TYPE"), headers=request.headers)
    session = await ChatSession.open(user=user, chat=chat)
    if chat.stream:
        return StreamingHttpResponse(
            session.stream(),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return JsonResponse(await session.collect())


@csrf_exempt
async def chat_completions(request):
    try:
        response = await _chat_completion(request)
    except ApiError as error:
        response = error_response(error)
    response["x-request-id"] = getattr(request, "request_id", None) or f"req_{uuid.uuid4().hex}"
    return response
