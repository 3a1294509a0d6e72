"""A chat completion request waiting on its job: open the job, read its reply channel, and turn
what arrives into SSE chunks or one chat.completion object.

Async; the ORM is reached only through sync_to_async. The reply channel is subscribed before the
job exists, so nothing the worker sends can be missed.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextvars import ContextVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

from accounts.authentication import api_key_required
from inference import relay
from inference.counting import BOUNDED, EXACT, model_counter
from inference.models import Job, LlmModel
from inference.openai.requests import ChatRequest
from inference.openai.responses import (
    SSE_DONE,
    SSE_KEEPALIVE,
    ChatCompletionAccumulator,
    TextCompletionAccumulator,
    completion_id,
    sse_error,
    sse_event,
    text_completion_id,
    usage_payload,
)
from inference.relay import ReplyReader
from inference.selectors import model_resolve, model_worker_features
from inference.services import job_cancel, job_expire
from inference.services.leases import job_outcome_read
from inference.services.opening import RETRY_AFTER_SECONDS, job_open, no_worker
from ratelimits.services import (
    ratelimit_check_request,
    ratelimit_tokens_correct_async,
    ratelimit_tokens_reserve_async,
)
from sogni_platform.exceptions import ApiError, NotFound, ServiceUnavailable, error_response

logger = logging.getLogger(__name__)

# The sessions a request opened, for the ASGI application to close if the response is never read
# (sogni_platform.asgi.http_application); unset outside it.
chat_sessions: ContextVar[list | None] = ContextVar("chat_sessions", default=None)


def in_db_thread(function):
    """`function` off the event loop in a pool thread, then close that thread's database connection: a
    stream lasts as long as the generation and must not hold a connection while it waits. Not
    thread-sensitive: each call stands alone, so it does not queue behind the request's middleware
    for the thread Django keeps per request."""

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            for connection in connections.all(initialized_only=True):
                if not connection.in_atomic_block:  # a caller's transaction (a test's) keeps its connection
                    connection.close()

    return sync_to_async(call, thread_sensitive=False)


async def answered(request, handler, *args):
    """`handler(request, *args)`'s response, or the OpenAI-shaped error it raised; either carries x-request-id."""
    try:
        response = await handler(request, *args)
    except ApiError as error:
        response = error_response(error)
    response["x-request-id"] = getattr(request, "request_id", None) or f"req_{uuid.uuid4().hex}"
    return response


def job_error(code: str, message: str, *, param: str = "messages") -> ApiError:
    """A job's failure as the API reports it."""
    if code == "no_worker_available":
        return no_worker(message)
    if code == "overloaded":
        return ServiceUnavailable(message, code="overloaded", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if code == "context_length_exceeded":
        return ApiError(message, param=param, code=code)
    if code == "invalid_request":
        return ApiError(message, code="invalid_request")
    return ApiError(message, status=502, type="server_error", code=code)


def _max_tokens(*, chat: ChatRequest, model: LlmModel, prompt_tokens: int | None) -> int:
    """The job's max_tokens: the request's (or the model's limit), within the model's limit and, for a
    counted prompt, within what the context window holds after it. A prompt that leaves no room for
    the requested max_tokens (or, unset, for one token) is the client's error, before any job exists."""
    max_tokens = min(chat.max_tokens or model.max_output_tokens, model.max_output_tokens)
    if prompt_tokens is None:
        return max_tokens
    room = model.context_window - prompt_tokens
    wanted = max_tokens if chat.max_tokens else 1
    if wanted > room:
        raise job_error(
            "context_length_exceeded",
            f"This model's maximum context length is {model.context_window} tokens. However, you requested "
            f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the {chat.input_param}, {wanted} in the "
            f"completion). Please reduce the length of the {chat.input_param} or completion.",
            param=chat.input_param,
        )
    return min(max_tokens, room)


def _job_open(
    *, headers, chat: ChatRequest, reply_channel: str, public_id: str | None = None
) -> tuple[Job, LlmModel, object]:
    """Authenticate, then open the job: one thread hop for everything before the worker has it; on
    PostgreSQL usually one statement (inference.services.opening). `public_id`: the id the client
    knows the job by (a new chatcmpl- id unless the request's API names its own, e.g. resp_)."""
    api_key = api_key_required(headers, cached=True)
    model = model_resolve(model_id=chat.model)
    if model is None:
        name = chat.model or "(default)"
        raise NotFound(
            f"The model `{name}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    needs = chat.worker_features()
    if needs:
        worker_features_check(model=model, needs=needs)
    request = chat.engine_request()
    counter = model_counter(model)
    prompt_tokens = counter.prompt(request) if counter is not None else None
    request["max_tokens"] = max_tokens = _max_tokens(chat=chat, model=model, prompt_tokens=prompt_tokens)
    if prompt_tokens is None:
        prompt_tokens_estimate = chat.estimate_prompt_tokens(context_window=model.context_window)
    else:
        prompt_tokens_estimate = prompt_tokens
    # Tokens per minute are checked against the worst case; the session records what was used.
    ratelimit_state = ratelimit_check_request(api_key=api_key, tokens=prompt_tokens_estimate + max_tokens)
    # Unnamed: the account's default, read with the job's insert (the cached user may be older).
    job = job_open(
        user=api_key.user,
        model=model,
        public_id=public_id or (completion_id() if chat.prompt is None else text_completion_id()),
        request=request,
        stream=chat.stream,
        max_tokens=max_tokens,
        prompt_tokens_estimate=prompt_tokens_estimate,
        token_counting=BOUNDED if prompt_tokens is None else EXACT,
        token_type=chat.token_type if chat.token_type_explicit else None,
        reply_channel=reply_channel,
    )
    return job, model, ratelimit_state


# The request field each worker feature serves, named by the 400 when no online worker has it.
FEATURE_PARAMS = {"logprobs": "logprobs", "prompt": "prompt"}
FEATURE_WHAT = {"logprobs": "return log probabilities", "prompt": "complete a raw prompt"}


def worker_features_check(*, model: LlmModel, needs: tuple[str, ...]) -> None:
    """A 400 naming the field when the model's online workers cannot serve what `needs` asks; with no
    worker online at all, the request goes on to the usual 503."""
    offered = model_worker_features(model_id=model.id)
    if offered is None:
        return
    for feature in needs:
        if feature not in offered:
            param = FEATURE_PARAMS[feature]
            raise ApiError(
                f"Unsupported parameter: '{param}': no worker serving `{model.id}` can {FEATURE_WHAT[feature]}.",
                param=param,
                code="unsupported_parameter",
            )


class ChatSession:
    """One request's view of its job, from queued to its end."""

    def __init__(self, *, job: Job, model: LlmModel, chat: ChatRequest, reader: ReplyReader, ratelimit_state=None):
        self.job_id = str(job.id)
        self.reader = reader
        accumulator = ChatCompletionAccumulator if chat.prompt is None else TextCompletionAccumulator
        self.accumulator = accumulator(
            model=model.id,
            include_usage=chat.include_usage,
            split_think=model.supports_reasoning,
            id=job.public_id,
            created=int(job.created_at.timestamp()),
            logprobs=bool(chat.options.get("logprobs")),
        )
        self.input_param = chat.input_param
        self.user_id = job.user_id
        self.ratelimit_state = ratelimit_state  # for the middleware's x-ratelimit-* headers
        self.ended = False
        self.closed = False
        self.used_tokens = 0  # the job's usage, once done
        # What the client got before an unfinished job ended: its prompt and the tokens delivered.
        self.prompt_tokens, self.max_tokens, self.delivered_tokens = job.prompt_tokens_estimate, job.max_tokens, 0

    @classmethod
    async def open(cls, *, headers, chat: ChatRequest, public_id: str | None = None) -> "ChatSession":
        """The request's job, opened for the API key in `headers` (InvalidApiKey, 401, if there is none)."""
        layer = get_channel_layer()
        assert layer is not None  # settings.CHANNEL_LAYERS always names one
        reply_channel = await layer.new_channel()
        reader = ReplyReader(reply_channel)
        opening = in_db_thread(_job_open)(headers=headers, chat=chat, reply_channel=reply_channel, public_id=public_id)
        opening = asyncio.ensure_future(opening)
        try:
            job, model, state = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The client left while its job was being opened; the thread opens it all the same.
            await cls._abandon(opening, chat=chat, reader=reader)
            raise
        except BaseException:
            await reader.close()
            raise
        session = cls(job=job, model=model, chat=chat, reader=reader, ratelimit_state=state)
        opened = chat_sessions.get()
        if opened is not None:
            opened.append(session)
        # Registered first: a client leaving during the reservation still gets its session closed.
        session.ratelimit_state = await ratelimit_tokens_reserve_async(
            state=state, user_id=job.user_id, tokens=job.prompt_tokens_estimate + job.max_tokens
        )
        return session

    @classmethod
    async def _abandon(cls, opening: asyncio.Future, *, chat: ChatRequest, reader: ReplyReader) -> None:
        """Wait for a job nobody will read to be opened, then cancel it (nothing delivered: no charge)."""
        try:
            job, model, _ = await opening
        except Exception:  # nothing was opened (402, 429, 503...)
            await reader.close()
            return
        await cls(job=job, model=model, chat=chat, reader=reader).close()

    async def _messages(
        self, *, keepalive: float | None, head: float | None = None
    ) -> AsyncGenerator[dict | None, None]:
        """Reply-channel messages until the job ends; None when `keepalive` seconds passed quietly, and
        once `head` seconds after the start if no delta (nor the job's end) came by then.

        Fails the job with no_worker_available when it stays queued for JOB_QUEUE_TIMEOUT. Once a worker
        has it, a quiet spell of JOB_QUIET_CHECK_SECONDS reads the job's row (job_outcome_read), so a
        `done` lost with the channel layer or a lease nobody reaps cannot keep the request waiting.
        """
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + settings.JOB_QUEUE_TIMEOUT
        quiet = settings.JOB_QUIET_CHECK_SECONDS
        heard = kept = loop.time()  # the last message; the last message or keep-alive
        head_at = heard + head if head is not None else None
        while True:
            now = loop.time()
            wake = deadline if deadline is not None else heard + quiet
            if keepalive is not None:
                wake = min(wake, kept + keepalive)
            if head_at is not None:
                wake = min(wake, head_at)
            message = await self.reader.next(max(wake - now, 0))
            now = loop.time()
            if message is None:
                if head_at is not None and now >= head_at:
                    head_at = None
                    yield None
                    continue
                if deadline is not None and now >= deadline:
                    deadline = None
                    heard = now
                    if await in_db_thread(job_expire)(job_id=self.job_id):
                        self.ended = True
                        raise no_worker("No worker became available for this model in time. Please retry shortly.")
                    continue  # a worker took it meanwhile: its job.assigned is on the way
                if deadline is None and now >= heard + quiet:
                    heard = now
                    message = await in_db_thread(job_outcome_read)(job_id=self.job_id)
                if message is None:
                    if keepalive is not None and now >= kept + keepalive:
                        kept = now
                        yield None
                    continue
            heard = kept = now
            kind = message["type"]
            if kind == relay.REPLY_OVERFLOW:  # the client read too slowly; close() cancels the job
                raise ApiError(
                    "The answer arrived faster than the client read it, so the request was ended.",
                    status=502,
                    type="server_error",
                    code="client_too_slow",
                )
            if kind == relay.REPLY_ASSIGNED:
                deadline = None  # a worker has it: the queue timeout no longer applies
            elif kind == relay.REPLY_REQUEUED:
                deadline = loop.time() + settings.JOB_QUEUE_TIMEOUT
            elif kind in (relay.REPLY_DONE, relay.REPLY_ERROR):
                self.ended = True
                head_at = None
            elif kind == relay.REPLY_DELTA:
                self.delivered_tokens += message.get("tokens", 0)
                head_at = None
            yield message
            if self.ended:
                return

    def replies(self, *, keepalive: float | None) -> AsyncGenerator[dict | None, None]:
        """The job's reply-channel messages as _messages gives them, for answers in another wire format
        (the Responses API) built on the same job."""
        return self._messages(keepalive=keepalive)

    def settled_usage(self, message: dict) -> dict:
        """A `done` message's usage as chat's usage payload (with `cost`), recorded for the rate limit."""
        return self._usage(message)

    def _usage(self, message: dict) -> dict:
        usage = message["usage"]
        self.used_tokens = usage["prompt_tokens"] + usage["completion_tokens"]
        return usage_payload(
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            reasoning_tokens=usage["reasoning_tokens"],
            cost=message.get("cost"),
        )

    async def stream_open(self) -> AsyncIterator[bytes]:
        """The SSE body, once the response's status is known: after the job's first delta (or its end)
        or STREAM_HEADERS_WAIT_SECONDS, whichever comes first. A failure known by then (the worker
        refused the job, no worker became available) raises its ApiError, for the view to answer with
        its status as a non-streaming request would be; later ones are error events in the stream."""
        wait = settings.STREAM_HEADERS_WAIT_SECONDS
        messages = self._messages(keepalive=settings.SSE_KEEPALIVE_SECONDS, head=wait)
        head: list[dict] = []
        loop = asyncio.get_running_loop()
        bound = loop.time() + wait
        try:
            async for message in messages:
                if message is None:
                    if loop.time() < bound:
                        continue  # a keep-alive's turn: nothing is sent before the headers
                    break  # the bound passed: the headers go out, keep-alives follow
                if message["type"] == relay.REPLY_ERROR:
                    raise job_error(message["code"], message["message"], param=self.input_param)
                head.append(message)
                if message["type"] in (relay.REPLY_DELTA, relay.REPLY_DONE):
                    break
        except BaseException:
            await messages.aclose()
            await asyncio.shield(self.close())
            raise
        return self.stream(messages, head=head)

    async def stream(self, messages: AsyncGenerator[dict | None, None], *, head: list[dict]) -> AsyncIterator[bytes]:
        """SSE: keep-alive comments while waiting, one event batch per delta (the role chunk with
        the first), then finish (+ usage) and [DONE]. Errors end the stream with an error event
        and [DONE]. Deltas that are already waiting go out in one write. `head`: what stream_open
        read from `messages` already."""
        accumulator = self.accumulator
        out: list[bytes] = []

        def add(message: dict) -> None:
            kind = message["type"]
            if kind == relay.REPLY_DELTA:
                out.extend(sse_event(chunk) for chunk in accumulator.feed(message))
            elif kind == relay.REPLY_DONE:
                chunks = accumulator.finish(finish_reason=message["finish_reason"], usage=self._usage(message))
                out.extend(sse_event(chunk) for chunk in chunks)
                out.append(SSE_DONE)
            elif kind == relay.REPLY_ERROR:
                out.append(sse_error(job_error(message["code"], message["message"], param=self.input_param)) + SSE_DONE)

        try:
            for early in head:
                add(early)
            if out and (self.ended or not self.reader.ready()):
                yield b"".join(out)
                out.clear()
            if not self.ended:
                async for message in messages:
                    if message is None:
                        yield SSE_KEEPALIVE
                        continue
                    add(message)
                    if out and (self.ended or not self.reader.ready()):
                        yield b"".join(out)
                        out.clear()
        except ApiError as error:
            yield b"".join(out) + sse_error(error) + SSE_DONE
        finally:
            await messages.aclose()
            await asyncio.shield(self.close())

    async def collect(self) -> dict:
        """The non-streaming chat.completion; raises ApiError when the job fails."""
        try:
            async for message in self._messages(keepalive=None):
                assert message is not None  # no keepalive asked for
                kind = message["type"]
                if kind == relay.REPLY_DELTA:
                    self.accumulator.feed(message)
                elif kind == relay.REPLY_DONE:
                    return self.accumulator.completion(
                        finish_reason=message["finish_reason"], usage=self._usage(message)
                    )
                elif kind == relay.REPLY_ERROR:
                    raise job_error(message["code"], message["message"], param=self.input_param)
            raise AssertionError("reply channel ended without done or error")
        finally:
            await asyncio.shield(self.close())

    async def close(self) -> None:
        """Unsubscribe; if the job is still going (the client left), cancel it. Once; later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        used = self.used_tokens
        if not used and self.delivered_tokens:  # cancelled or failed after the first token
            used = self.prompt_tokens + min(self.delivered_tokens, self.max_tokens)
        await ratelimit_tokens_correct_async(state=self.ratelimit_state, user_id=self.user_id, used=used)
        try:
            if not self.ended:
                self.ended = True
                # The database, not job.assigned, says where the job is: it may have been requeued.
                worker_channel = await in_db_thread(job_cancel)(job_id=self.job_id)
                layer = get_channel_layer()
                if worker_channel and layer is not None:
                    await layer.send(worker_channel, {"type": relay.WORKER_JOB_CANCEL, "job_id": self.job_id})
                logger.info("job %s cancelled: the client went away", self.job_id)
        finally:
            await self.reader.close()
