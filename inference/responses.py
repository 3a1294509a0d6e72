"""OpenAI's Responses API: POST /v1/responses, GET and DELETE /v1/responses/{id}.

A response is one chat job: its request is translated into the chat request the platform already
runs (inference.openai.responses_input), opened and read by inference.chat.ChatSession (the same
counting, hold, dispatch, worker protocol and settlement), and its replies are written as output
items and stream events (inference.openai.responses_output). The job's public id is the response id,
so /v1/generation and the usage pages know it by that id too.
"""

import asyncio

from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.authentication import api_key_required
from inference import relay
from inference.chat import ChatSession, answered, in_db_thread, job_error
from inference.openai.requests import parse_http_request
from inference.openai.responses import SSE_KEEPALIVE
from inference.openai.responses_input import ResponsesRequest, parse_responses_request
from inference.openai.responses_output import ResponseWriter, response_id, response_usage, sse_response_event
from inference.services.stored_responses import stored_response_delete, stored_response_get, stored_response_save
from sogni_platform.exceptions import ApiError, NotFound


def _as_input(error: ApiError) -> ApiError:
    """The chat path's error with this API's name for the prompt: `input` where chat says `messages`."""
    if error.param == "messages":
        error.param = "input"
    return error


class ResponseRun:
    """One response's job, from its first reply to the stored answer."""

    def __init__(self, *, session: ChatSession, parsed: ResponsesRequest, conversation: list[dict]):
        self.session = session
        self.parsed = parsed
        self.conversation = conversation
        accumulator = session.accumulator
        self.writer = ResponseWriter(
            id=accumulator.id,
            model=accumulator.model,
            echo=parsed.echo,
            store=parsed.store,
            previous_response_id=parsed.previous_response_id,
            max_output_tokens=parsed.max_output_tokens,
            created_at=accumulator.created,
        )

    async def _finish(self, message: dict) -> tuple[list[dict], dict]:
        """The closing events and the final response, stored first when `store` asks for it (so a
        client that continues from it at once finds it)."""
        session, writer = self.session, self.writer
        closing = session.accumulator.finish(finish_reason=message["finish_reason"])
        events = writer.feed(closing)
        usage = response_usage(session.settled_usage(message))
        more, response = writer.finish(finish_reason=closing[-1]["choices"][0]["finish_reason"], usage=usage)
        if self.parsed.store:
            conversation = [*self.conversation, writer.assistant_message()]
            await in_db_thread(stored_response_save)(
                user_id=session.user_id, response=response, conversation=conversation
            )
        return events + more, response

    async def stream(self):
        """SSE: response.created and response.in_progress at once, then the output's events as the
        job's deltas arrive, and response.completed (or .incomplete); a failure ends it with an
        `error` event and response.failed. Keep-alive comments while nothing is ready."""
        session, writer = self.session, self.writer
        out: list[bytes] = []
        try:
            yield b"".join(sse_response_event(event) for event in writer.start())
            async for message in session.replies(keepalive=settings.SSE_KEEPALIVE_SECONDS):
                if message is None:
                    yield SSE_KEEPALIVE
                    continue
                kind = message["type"]
                events: list[dict] = []
                if kind == relay.REPLY_DELTA:
                    events = writer.feed(session.accumulator.feed(message))
                elif kind == relay.REPLY_DONE:
                    events, _ = await self._finish(message)
                elif kind == relay.REPLY_ERROR:
                    events = writer.fail(_as_input(job_error(message["code"], message["message"])))
                out.extend(sse_response_event(event) for event in events)
                if out and (session.ended or not session.reader.ready()):
                    yield b"".join(out)
                    out.clear()
        except ApiError as error:
            yield b"".join(out) + b"".join(sse_response_event(event) for event in writer.fail(_as_input(error)))
        finally:
            await asyncio.shield(session.close())

    async def collect(self) -> dict:
        """The final response object; raises ApiError when the job fails."""
        session = self.session
        try:
            async for message in session.replies(keepalive=None):
                assert message is not None  # no keep-alive asked for
                kind = message["type"]
                if kind == relay.REPLY_DELTA:
                    self.writer.feed(session.accumulator.feed(message))
                elif kind == relay.REPLY_DONE:
                    _, response = await self._finish(message)
                    return response
                elif kind == relay.REPLY_ERROR:
                    raise _as_input(job_error(message["code"], message["message"]))
            raise AssertionError("reply channel ended without done or error")
        finally:
            await asyncio.shield(session.close())


def _method_not_allowed(request, allowed: str) -> ApiError:
    return ApiError(
        f"Method {request.method} not allowed; use {allowed}.",
        status=405,
        code="method_not_allowed",
        headers={"Allow": allowed.replace(" or ", ", ")},
    )


async def _create(request):
    if request.method != "POST":
        raise _method_not_allowed(request, "POST")
    try:
        parsed = parse_http_request(request, parse_responses_request)
    except ApiError:
        await in_db_thread(api_key_required)(request.headers)  # a missing or wrong key: 401 before the 400
        raise
    history: list[dict] = []
    if parsed.previous_response_id:
        api_key = await in_db_thread(api_key_required)(request.headers, cached=True)
        stored = await in_db_thread(stored_response_get)(
            user_id=api_key.user_id, response_id=parsed.previous_response_id
        )
        if stored is None:
            raise NotFound(
                f"Previous response with id '{parsed.previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history = stored.conversation
    conversation = parsed.conversation(history)
    try:
        session = await ChatSession.open(
            headers=request.headers, chat=parsed.chat_request(conversation), public_id=response_id()
        )
    except ApiError as error:
        raise _as_input(error) from None
    request.ratelimit_state = session.ratelimit_state
    run = ResponseRun(session=session, parsed=parsed, conversation=conversation)
    if parsed.stream:
        return StreamingHttpResponse(
            run.stream(),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return JsonResponse(await run.collect())


async def _stored(request, response_id: str):
    if request.method not in ("GET", "DELETE"):
        raise _method_not_allowed(request, "GET or DELETE")
    api_key = await in_db_thread(api_key_required)(request.headers, cached=True)
    not_found = NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="not_found")
    if request.method == "DELETE":
        if not await in_db_thread(stored_response_delete)(user_id=api_key.user_id, response_id=response_id):
            raise not_found
        return JsonResponse({"id": response_id, "object": "response", "deleted": True})
    stored = await in_db_thread(stored_response_get)(user_id=api_key.user_id, response_id=response_id)
    if stored is None:
        raise not_found
    return JsonResponse(stored.response)


@csrf_exempt
async def responses(request):
    return await answered(request, _create)


@csrf_exempt
async def response_detail(request, response_id: str):
    return await answered(request, _stored, response_id)
