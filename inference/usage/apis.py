"""GET /v1/generation?id=<chatcmpl id>: one request's stats, for its owner only."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.models import Job
from inference.usage.selectors import generation_get, job_cost, job_hold, job_timing
from sogni_platform.exceptions import ApiError, NotFound

_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_NULLABLE_INT = {"type": "integer", "nullable": True}
GENERATION_SCHEMA = {
    "type": "object",
    "required": [
        "object",
        "id",
        "model",
        "status",
        "created",
        "usage",
        "cost",
        "latency_ms",
        "ttft_ms",
        "finish_reason",
        "cancelled",
        "error",
    ],
    "properties": {
        "object": {"type": "string", "enum": ["generation"]},
        "id": {"type": "string"},
        "model": {"type": "string"},
        "status": {"type": "string", "enum": [choice for choice, _ in Job.Status.choices]},
        "created": {"type": "integer", "description": "Unix seconds when the request arrived."},
        "usage": {
            "type": "object",
            "required": ["prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens"],
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
                "reasoning_tokens": {"type": "integer"},
            },
        },
        "cost": {
            "type": "object",
            "nullable": True,
            "description": "What was charged (exact decimal strings); null while the request is not settled.",
            "required": ["token_type", "amount", "usd"],
            "properties": {
                "token_type": {"type": "string", "enum": ["spark", "sogni"]},
                "amount": {"type": "string"},
                "usd": {"type": "string"},
            },
        },
        "latency_ms": {**_NULLABLE_INT, "description": "From arrival to the end of the answer."},
        "ttft_ms": {**_NULLABLE_INT, "description": "From arrival to the first token."},
        "queue_ms": {**_NULLABLE_INT, "description": "From arrival to a worker taking the job."},
        "generation_ms": {**_NULLABLE_INT, "description": "From the first token to the end."},
        "finish_reason": {"type": "string", "nullable": True},
        "cancelled": {"type": "boolean"},
        "error": {
            "type": "object",
            "nullable": True,
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}


def generation_payload(job: Job) -> dict:
    timing = job_timing(job)
    return {
        "object": "generation",
        "id": job.public_id,
        "model": job.model_id,
        "status": job.status,
        "created": int(job.created_at.timestamp()),
        "usage": {
            "prompt_tokens": job.prompt_tokens,
            "completion_tokens": job.completion_tokens,
            "total_tokens": job.prompt_tokens + job.completion_tokens,
            "reasoning_tokens": job.reasoning_tokens,
        },
        "cost": job_cost(job_hold(job)),
        "latency_ms": timing.latency_ms,
        "ttft_ms": timing.ttft_ms,
        "queue_ms": timing.queue_ms,
        "generation_ms": timing.generation_ms,
        "finish_reason": job.finish_reason or None,
        "cancelled": job.status == Job.Status.CANCELLED,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
    }


class GenerationApi(APIView):
    @extend_schema(
        operation_id="getGeneration",
        summary="One chat completion's stats: tokens, cost, latency, time to first token, finish reason.",
        tags=["usage"],
        parameters=[
            OpenApiParameter(
                "id", OpenApiTypes.STR, OpenApiParameter.QUERY, required=True, description="The `chatcmpl-…` id."
            )
        ],
        responses={
            200: OpenApiResponse(GENERATION_SCHEMA, description="The request's stats."),
            400: OpenApiResponse(_ERROR, description="`id` is missing."),
            404: OpenApiResponse(_ERROR, description="No request of yours has this id."),
        },
    )
    def get(self, request):
        public_id = request.query_params.get("id")
        if not public_id:
            raise ApiError("Missing required parameter: 'id'.", param="id", code="missing_required_parameter")
        job = generation_get(user=request.user, public_id=public_id)
        if job is None:
            raise NotFound(f"No generation with id '{public_id[:64]}' was found.", param="id", code="not_found")
        return Response(generation_payload(job))
