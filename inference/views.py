"""POST /v1/chat/completions: authenticate, parse, open the job, stream or collect its answer."""

import uuid

from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.authentication import api_key_required
from inference.chat import ChatSession, in_db_thread
from inference.openai.requests import parse_http_request
from sogni_platform.exceptions import ApiError, error_response


async def _chat_completion(request):
    if request.method != "POST":
        raise ApiError(
            f"Method {request.method} not allowed; use POST.",
            status=405,
            code="method_not_allowed",
            headers={"Allow": "POST"},
        )
    try:
        chat = parse_http_request(request)
    except ApiError:
        await in_db_thread(api_key_required)(request.headers)  # a missing or wrong key: 401 before the 400
        raise
    session = await ChatSession.open(headers=request.headers, chat=chat)
    request.ratelimit_state = session.ratelimit_state
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
