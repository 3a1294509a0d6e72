"""The platform's own token counts: each catalog model's tokenizer, loaded once per process.

A model is counted exactly when the platform has its tokenizer: the file an operator uploaded
(LlmModel.tokenizer: a GGUF, whose vocabulary llama.cpp loads without weights, or a tokenizer.json for
the `tokenizers` library), or for the embedded default model the GGUF the worker serves it from. The
prompt is rendered as the worker's llama.cpp engine renders it (sogni_worker's ChatRenderer, tools
included) and counted as that engine counts it; a completion is counted from the text the platform
relayed. Any other model is bounded: its completion at most one token per UTF-8 byte relayed, its
prompt at most the request's estimate (ChatRequest.estimate_prompt_tokens).
"""

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import llama_cpp
from tokenizers import Tokenizer

from sogni_worker.engines import DEFAULT_MODEL_ID as EMBEDDED_MODEL_ID
from sogni_worker.engines import EngineError, default_model_path
from sogni_worker.engines.llama_prompt import ChatRenderer

logger = logging.getLogger(__name__)

EXACT = "exact"
BOUNDED = "bounded"


class TokenCounter:
    """A chat template and a tokenizer: the prompt and the completion as the engine counts them."""

    def __init__(self, *, renderer: ChatRenderer, count: Callable[[str], int]):
        self.renderer = renderer
        self.count = count

    def prompt(self, request: dict) -> int | None:
        """The prompt's tokens; None if the template rejects the messages (the worker will say so). A raw
        prompt (a legacy completion's) is counted as it is, with no template."""
        if "prompt" in request:
            return self.count(request["prompt"])
        try:
            return self.count(self.renderer.render(request))
        except EngineError:
            return None


def _gguf_counter(path: Path, chat_template: str | None) -> TokenCounter:
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    return TokenCounter(renderer=ChatRenderer.from_llama(llm, chat_template=chat_template), count=count)


def _tokenizer_json_counter(path: Path, chat_template: str | None) -> TokenCounter:
    tokenizer = Tokenizer.from_file(str(path))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return TokenCounter(renderer=ChatRenderer(chat_template), count=count)


def _source(model) -> Path | None:
    if model.tokenizer:
        return Path(model.tokenizer.path)
    if model.id == EMBEDDED_MODEL_ID:
        return default_model_path()
    return None


_loaded: dict[str, tuple[tuple, TokenCounter | None]] = {}
_loading = threading.Lock()


def model_counter(model) -> TokenCounter | None:
    """`model`'s counter, loaded on first use (and again when its tokenizer or template changes);
    None when the model has no tokenizer, or it cannot be loaded (logged)."""
    key = (model.tokenizer.name, model.chat_template)
    cached = _loaded.get(model.id)
    if cached is not None and cached[0] == key:
        return cached[1]
    with _loading:
        cached = _loaded.get(model.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        counter = None
        source = _source(model)
        if source is not None:
            load = _tokenizer_json_counter if source.suffix == ".json" else _gguf_counter
            try:
                counter = load(source, model.chat_template or None)
            except Exception:
                logger.exception("model %s: tokenizer %s could not be loaded; its counts are bounded", model.id, source)
        _loaded[model.id] = (key, counter)
        return counter


def model_token_counting(model) -> str:
    """EXACT or BOUNDED, as /v1/models reports it."""
    return EXACT if model_counter(model) is not None else BOUNDED


def completion_count(*, model, text: str, claimed: int) -> tuple[int, str]:
    """The completion tokens in `text` (what was relayed) and how they were counted. Bounded: the
    worker's claim, at most one token per UTF-8 byte."""
    counter = model_counter(model)
    if counter is not None:
        return counter.count(text), EXACT
    return min(claimed, len(text.encode("utf-8"))), BOUNDED
