"""POST /v1/chat/completions and /v1/completions: authenticate, parse, open the job, stream or collect
its answer."""

from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.authentication import api_key_required
from inference.chat import ChatSession, answered, in_db_thread
from inference.openai.completions import parse_completion_request
from inference.openai.requests import parse_chat_request, parse_http_request
from sogni_platform.exceptions import ApiError


async def _completion(request, parse):
    if request.method != "POST":
        raise ApiError(
            f"Method {request.method} not allowed; use POST.",
            status=405,
            code="method_not_allowed",
            headers={"Allow": "POST"},
        )
    try:
        chat = parse_http_request(request, parse)
    except ApiError:
        await in_db_thread(api_key_required)(request.headers)  # a missing or wrong key: 401 before the 400
        raise
    session = await ChatSession.open(headers=request.headers, chat=chat)
    request.ratelimit_state = session.ratelimit_state
    if chat.stream:
        return StreamingHttpResponse(
            await session.stream_open(),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return JsonResponse(await session.collect())


@csrf_exempt
async def chat_completions(request):
    return await answered(request, _completion, parse_chat_request)


@csrf_exempt
async def completions(request):
    """OpenAI's legacy completions: a raw prompt, no chat template (a `prompt` job, docs/worker-protocol.md)."""
    return await answered(request, _completion, parse_completion_request)
