"""The /v1/models objects: OpenAI's Model shape plus our fields (prices, limits, capacity)."""

from collections.abc import Set as AbstractSet
from decimal import Decimal

from billing.pricing import SPARK_USD
from inference.counting import model_token_counting
from inference.openai.sampling import SAMPLING_DEFAULTS, SAMPLING_LIMITS


def decimal_str(value: Decimal, *, places: int = 0) -> str:
    """Exact, without float noise or trailing zeros past `places` ("0.30", "60", "0.0375")."""
    normalised = value.normalize()
    exponent = normalised.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -places:
        normalised = normalised.quantize(Decimal(1).scaleb(-places))
    return f"{normalised:f}"


def model_pricing(model) -> dict:
    """USD and Spark per 1M input/output tokens, as decimal strings (1 Spark = $SPARK_USD)."""
    return {
        "input_usd_per_1m": decimal_str(model.input_price_usd_per_m, places=2),
        "output_usd_per_1m": decimal_str(model.output_price_usd_per_m, places=2),
        "input_spark_per_1m": decimal_str(model.input_price_usd_per_m / SPARK_USD),
        "output_spark_per_1m": decimal_str(model.output_price_usd_per_m / SPARK_USD),
        "spark_usd": decimal_str(SPARK_USD),
    }


def model_sampling(model) -> dict:
    return {
        "limits": {**SAMPLING_LIMITS, "max_tokens": {"minimum": 1, "maximum": model.max_output_tokens}},
        "defaults": {**SAMPLING_DEFAULTS, "max_tokens": model.max_output_tokens},
    }


def model_object(
    model, *, online_workers: int, is_default: bool = False, worker_features: AbstractSet[str] = frozenset()
) -> dict:
    return {
        "id": model.id,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.owned_by,
        "display_name": model.display_name,
        "name": model.display_name,  # what Open WebUI, LibreChat and OpenRouter's clients show
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "pricing": model_pricing(model),
        "capabilities": {
            "tools": model.supports_tools,
            "reasoning": model.supports_reasoning,
            "json": model.supports_json,
            # Served by some online worker: log probabilities, and raw prompts (POST /v1/completions).
            "logprobs": "logprobs" in worker_features,
            "completions": "prompt" in worker_features,
        },
        "sampling": model_sampling(model),
        # "exact": billed on the platform's own token counts; "bounded": at most one completion token per
        # UTF-8 byte relayed, the prompt at most its estimate (inference.counting).
        "token_counting": model_token_counting(model),
        "default": is_default,
        "online_workers": online_workers,
        "status": "online" if online_workers > 0 else "offline",
    }
