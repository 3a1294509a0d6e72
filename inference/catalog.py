"""The models the platform offers from the start; migrations and test fixtures seed from here."""

from decimal import Decimal

SEED = [
    {
        "id": "qwen3.5-35b-a3b-gguf-q4km",
        "display_name": "Qwen3.5 35B A3B (GGUF Q4_K_M)",
        "context_window": 32768,
        "max_output_tokens": 8192,
        "is_default": True,
        "supports_reasoning": True,
        "input_price_usd_per_m": Decimal("0.30"),
        "output_price_usd_per_m": Decimal("0.90"),
        "notes": "Served by supernet GPU workers through llama-server / vLLM.",
    },
    {
        "id": "qwen3.5-35b-a3b-abliterated-gguf-q4km",
        "display_name": "Qwen3.5 35B A3B Abliterated (GGUF Q4_K_M)",
        "context_window": 32768,
        "max_output_tokens": 8192,
        "supports_reasoning": True,
        "input_price_usd_per_m": Decimal("0.30"),
        "output_price_usd_per_m": Decimal("0.90"),
        "notes": "Refusal-ablated variant; served by supernet GPU workers.",
    },
    {
        "id": "smollm2-135m-instruct-q4_1",
        "display_name": "SmolLM2 135M Instruct (GGUF Q4_1, CPU)",
        "context_window": 8192,  # what SmolLM2 was trained for
        "max_output_tokens": 1024,
        "is_embedded_default": True,
        "input_price_usd_per_m": Decimal("0.30"),
        "output_price_usd_per_m": Decimal("0.90"),
        "notes": "The small model the embedded local worker serves on the CPU.",
    },
]


def catalog_seed(model_class=None) -> None:
    """Idempotent: insert or refresh the seed rows."""
    if model_class is None:
        from inference.models import LlmModel as model_class
    for row in SEED:
        model_class.objects.update_or_create(id=row["id"], defaults={k: v for k, v in row.items() if k != "id"})
