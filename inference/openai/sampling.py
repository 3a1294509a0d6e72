"""Sampling limits (what a request may ask for) and defaults (what applies when it does not).

The limits are enforced by requests.py and published by /v1/models. The defaults are the
reference worker engine's (worker/sogni_worker/engines/llama_cpp_engine.py); only fields the
client set travel in job.request, so an engine applies its own defaults to the rest.
"""

SAMPLING_LIMITS: dict[str, dict[str, float | int]] = {
    "temperature": {"minimum": 0, "maximum": 2},
    "top_p": {"exclusive_minimum": 0, "maximum": 1},
    "top_k": {"minimum": 0},
    "min_p": {"minimum": 0, "maximum": 1},
    "repetition_penalty": {"exclusive_minimum": 0},
    "frequency_penalty": {"minimum": -2, "maximum": 2},
    "presence_penalty": {"minimum": -2, "maximum": 2},
    "stop": {"max_items": 4},
}
SAMPLING_DEFAULTS: dict[str, float | int] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 40,
    "min_p": 0.05,
    "repetition_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}
