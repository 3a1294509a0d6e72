"""In-process llama.cpp (llama-cpp-python) on a GGUF file.

One `Llama` per slot: a Llama handle is not thread-safe, and slots are meant to run at once, so the
engine keeps a pool of `instances` handles (the weights are memory-mapped, so they share pages) and
each generation borrows one. Tokens are sampled one at a time with `Llama.generate`, so counts are
exact (the end-of-generation token is not counted), cancel is checked between tokens, and grammars
constrain tool calls and `response_format`.
"""

from __future__ import annotations

import codecs
import json
import os
import queue
import random
import threading
import uuid
from collections.abc import Generator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

# llama.cpp's OpenMP threads spin while idle, which starves everything else on a shared box (and
# other slots); an operator can still export OMP_WAIT_POLICY=ACTIVE. Read when the library loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import llama_cpp  # noqa: E402
import numpy as np  # noqa: E402
from llama_cpp import llama_grammar  # noqa: E402

from .base import Delta, Engine, EngineError, Finish, cancelled, token_entry, wanted_tool
from .llama_prompt import HERMES_MARKER, ChatRenderer, choice_grammar, offered_tools


def _grammar_from_schema(schema: Any) -> llama_cpp.LlamaGrammar:
    try:
        return llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema or {"type": "object"}), verbose=False)
    except Exception:  # an unsupported schema still gets well-formed JSON
        return llama_cpp.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)


class _Run:
    """One generation on one Llama handle: a token budget shared by every phase."""

    def __init__(self, llm: llama_cpp.Llama, request: dict[str, Any], cancel: threading.Event, budget: int) -> None:
        self.llm, self.cancel, self.budget = llm, cancel, budget
        self.generated = 0
        self.reported = 0
        self.finish = "stop"
        # With `logprobs`: how many alternatives per token, and the entries not yet sent in a delta.
        self.top_logprobs = int(request.get("top_logprobs") or 0) if request.get("logprobs") else None
        self.logprobs: list[dict[str, Any]] = []
        self.params: dict[str, Any] = {
            "temp": float(_get(request, "temperature", 1.0)),
            "top_p": float(_get(request, "top_p", 1.0)),
            "top_k": int(_get(request, "top_k", 40)),
            "min_p": float(_get(request, "min_p", 0.05)),
            "repeat_penalty": float(_get(request, "repetition_penalty", 1.0)),
            "frequency_penalty": float(_get(request, "frequency_penalty", 0.0)),
            "presence_penalty": float(_get(request, "presence_penalty", 0.0)),
        }
        seed = request.get("seed")
        llm.set_seed(int(seed) if seed is not None else random.randint(0, 2**31 - 1))  # noqa: S311

    def take(self) -> int:
        """Tokens generated since the last delta; every delta carries them, so the deltas sum to the total."""
        taken, self.reported = self.generated - self.reported, self.generated
        return taken

    def take_logprobs(self) -> list[dict[str, Any]]:
        taken, self.logprobs = self.logprobs, []
        return taken

    def _logprob(self, token: int) -> None:
        """`token`'s log probability (and the top alternatives') under the model's distribution at the
        position that produced it: the logits llama.cpp holds for the last evaluated token."""
        n_vocab = self.llm.n_vocab()
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float64)
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        entry = token_entry(self.llm.detokenize([token]), logprobs[token])
        top = self.top_logprobs or 0
        best: Any = np.argpartition(-logprobs, top)[:top] if top else []
        best = sorted(best, key=lambda t: -logprobs[t])
        entry["top_logprobs"] = [token_entry(self.llm.detokenize([int(t)]), logprobs[t]) for t in best]
        self.logprobs.append(entry)

    def tokens(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def sample(self, text: str, *, grammar: Any = None, stop: tuple[str, ...] = ()) -> Generator[tuple[str, int]]:
        """(text, tokens) per sampled token; text held back while it may begin a stop string.

        Sets self.finish to "stop" (end of generation or a stop string) or "length" (budget spent).
        """
        if self.budget <= 0:
            self.finish = "length"
            return
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        prompt = self.tokens(text)
        vocab = self.llm._model.vocab
        generator = self.llm.generate(prompt, grammar=grammar, **self.params)
        self.finish = "stop"
        try:
            for token in generator:
                if self.cancel.is_set():
                    raise cancelled()
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                if self.top_logprobs is not None:
                    self._logprob(token)
                self.generated += 1
                self.budget -= 1
                pending += decoder.decode(self.llm.detokenize([token]))
                hits = [i for i in (pending.find(s) for s in stop) if i >= 0]
                if hits:
                    yield pending[: min(hits)], 1
                    return
                keep = max((k for s in stop for k in range(len(s), 0, -1) if pending.endswith(s[:k])), default=0)
                yield pending[: len(pending) - keep], 1
                pending = pending[len(pending) - keep :]
                if self.budget <= 0:
                    self.finish = "length"
                    break
        finally:
            generator.close()
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending, 0


def _get(request: dict[str, Any], key: str, default: Any) -> Any:
    value = request.get(key)
    return default if value is None else value


class LlamaCppEngine(Engine):
    name = "llama-cpp"
    features = ("logprobs", "prompt")

    def __init__(
        self,
        *,
        model_path: Path,
        n_ctx: int = 8192,
        n_threads: int = 2,
        instances: int = 1,
        n_gpu_layers: int = 0,
        chat_template: str | None = None,
    ) -> None:
        self.n_ctx = n_ctx
        self.pool: queue.Queue[llama_cpp.Llama] = queue.Queue()
        for _ in range(instances):
            self.pool.put(
                llama_cpp.Llama(
                    model_path=str(model_path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_gpu_layers=n_gpu_layers,
                    verbose=False,
                )
            )
        self.renderer = ChatRenderer.from_llama(self.pool.queue[0], chat_template=chat_template)
        self.style = self.renderer.style

    def close(self) -> None:
        while not self.pool.empty():
            self.pool.get_nowait().close()

    def generate(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[Delta | Finish]:
        raw = request.get("prompt")
        if raw is not None:  # a raw-prompt job (the `prompt` feature): no chat template, no tools
            if not isinstance(raw, str) or not raw:
                raise EngineError("invalid_request", "prompt must be a non-empty string")
            request = {k: v for k, v in request.items() if k not in ("tools", "tool_choice", "response_format")}
        elif not request.get("messages"):
            raise EngineError("invalid_request", "messages must not be empty")
        must_call, forced = wanted_tool(request)
        tools = offered_tools(request)
        names = [t["function"]["name"] for t in tools or []]
        if forced is not None and forced not in names:
            raise EngineError("invalid_request", f"tool_choice names {forced!r}, which is not in tools")
        prompt = raw if raw is not None else self.renderer.render(request)
        llm = self.pool.get()
        try:
            prompt_tokens = len(llm.tokenize(prompt.encode(), add_bos=False, special=True))
            room = self.n_ctx - prompt_tokens
            if room <= 0:
                raise EngineError(
                    "context_length_exceeded",
                    f"the prompt is {prompt_tokens} tokens; this worker's context window is {self.n_ctx}",
                )
            run = _Run(llm, request, cancel, min(int(request.get("max_tokens") or 256), room))
            stop = tuple(s for s in (request.get("stop") or []) if s)
            if isinstance(request.get("stop"), str):
                stop = (request["stop"],)
            if tools:
                yield from self._tools(run, prompt, tools, names, must_call, forced, stop)
            else:
                yield from self._text(run, prompt, stop, self._format_grammar(request))
            rest, logprobs = run.take(), run.take_logprobs()
            if rest or logprobs:
                yield Delta(tokens=rest, logprobs=logprobs)
            yield Finish(run.finish, prompt_tokens, run.generated)
        finally:
            self.pool.put(llm)

    @staticmethod
    def _format_grammar(request: dict[str, Any]) -> Any:
        fmt = request.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return _grammar_from_schema((fmt.get("json_schema") or {}).get("schema"))
        if fmt.get("type") == "json_object":
            schema = fmt.get("schema")
            if schema:
                return _grammar_from_schema(schema)
            return llama_cpp.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)
        return None

    def _text(self, run: _Run, prompt: str, stop: tuple[str, ...], grammar: Any) -> Iterator[Delta]:
        for text, _ in run.sample(prompt, grammar=grammar, stop=stop):
            if text:
                yield Delta(content=text, tokens=run.take(), logprobs=run.take_logprobs())

    def _tools(
        self,
        run: _Run,
        prompt: str,
        tools: list,
        names: list[str],
        must_call: bool,
        forced: str | None,
        stop: tuple[str, ...],
    ) -> Iterator[Delta]:
        style = self.style
        if forced is not None:
            name, prompt = forced, prompt + style.call_open + forced + style.name_close
        elif must_call or style.message_open:
            grammar = llama_cpp.LlamaGrammar.from_string(
                choice_grammar(names, style, allow_message=not must_call, with_open=not must_call), verbose=False
            )
            prefix = "" if not must_call else style.call_open
            chosen = "".join(text for text, _ in run.sample(prompt + prefix, grammar=grammar))
            if style.message_open and chosen.startswith(style.message_open):
                yield from self._text(run, prompt + chosen, stop, None)
                return
            head = chosen[len(style.call_open) :] if not must_call else chosen
            name, prompt = head[: -len(style.name_close)], prompt + prefix + chosen
        else:  # Hermes template, "auto": free text unless the model opens a <tool_call>
            held = ""
            with closing(run.sample(prompt, stop=stop)) as pieces:
                for text, _ in pieces:
                    held += text
                    if held.lstrip().startswith(HERMES_MARKER):
                        break
                    if not HERMES_MARKER.startswith(held.lstrip()) or run.budget <= 0:
                        yield Delta(content=held, tokens=run.take(), logprobs=run.take_logprobs())
                        held = ""
                else:
                    if held:
                        yield Delta(content=held, tokens=run.take(), logprobs=run.take_logprobs())
                    return
            grammar = llama_cpp.LlamaGrammar.from_string(
                choice_grammar(names, style, allow_message=False, with_open=False), verbose=False
            )
            prompt += style.call_open
            chosen = "".join(text for text, _ in run.sample(prompt, grammar=grammar))
            name, prompt = chosen[: -len(style.name_close)], prompt + chosen
        if run.finish == "length":
            return
        if name not in names:
            raise EngineError("engine_error", f"the model chose an unknown function {name!r}")
        schema = next(t["function"].get("parameters") for t in tools if t["function"]["name"] == name)
        run.top_logprobs = None  # log probabilities are for content; a tool call carries none
        run.take_logprobs()
        yield Delta(tool_calls=[{"index": 0, "id": f"call_{uuid.uuid4().hex[:24]}", "name": name}], tokens=run.take())
        for text, _ in run.sample(prompt, grammar=_grammar_from_schema(schema)):
            if text:
                yield Delta(tool_calls=[{"index": 0, "arguments": text}], tokens=run.take())
        if run.finish != "length":
            run.finish = "tool_calls"
