"""Prompt rendering and tool-call styles for the in-process llama.cpp engine.

Two ways to offer tools. A model whose own chat template takes `tools` and speaks Hermes-style
`<tool_call>{"name": ..., "arguments": ...}</tool_call>` (Qwen, Hermes, ...) gets them through its
template. Any other model gets them in the system message in the `functions.<name>:` format of
llama-cpp-python's chatml-function-calling, and the call is grammar-constrained either way: the
name is chosen from the offered names and the arguments follow the function's JSON schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jinja2
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from .base import EngineError


@dataclass(frozen=True)
class ToolStyle:
    call_open: str  # text before the function name
    name_close: str  # text between the name and the arguments object
    message_open: str | None  # with tool_choice "auto": marker of a plain answer (None: free text, watch for call_open)


HERMES = ToolStyle(call_open='<tool_call>\n{"name": "', name_close='", "arguments": ', message_open=None)
FUNCTIONS = ToolStyle(call_open="functions.", name_close=":\n", message_open="message:\n")
HERMES_MARKER = "<tool_call>"


def template_speaks_hermes_tools(template: str | None) -> bool:
    return template is not None and "tools" in template and HERMES_MARKER in template


def gbnf_literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def choice_grammar(names: list[str], style: ToolStyle, *, allow_message: bool, with_open: bool) -> str:
    """GBNF: one of the offered names then name_close (optionally preceded by call_open, or a plain-answer marker)."""
    call = "(" + " | ".join(gbnf_literal(n) for n in names) + ") " + gbnf_literal(style.name_close)
    if with_open:
        call = gbnf_literal(style.call_open) + " " + call
    if allow_message and style.message_open:
        return f"root ::= {gbnf_literal(style.message_open)} | {call}\n"
    return f"root ::= {call}\n"


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _arguments_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def native_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for a template that knows tools: plain-string content, tool-call arguments as objects."""
    out = []
    for message in messages:
        m = {**message, "content": _text(message.get("content"))}
        if message.get("tool_calls"):
            m["tool_calls"] = [
                {
                    **call,
                    "function": {
                        **call.get("function", {}),
                        "arguments": _arguments_object(call.get("function", {}).get("arguments")),
                    },
                }
                for call in message["tool_calls"]
            ]
        out.append(m)
    return out


def flat_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Messages for a template that knows only system/user/assistant text: tools, calls and results as text."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.get("role"), _text(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function", {})
                names[call.get("id", "")] = function.get("name", "")
                arguments = function.get("arguments")
                arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
                calls.append(f"{FUNCTIONS.call_open}{function.get('name', '')}{FUNCTIONS.name_close}{arguments}")
            content = (f"{FUNCTIONS.message_open}{content}\n" if content else "") + "\n".join(calls)
        elif role == "tool":
            role = "user"
            name = names.get(message.get("tool_call_id", ""), "the function")
            content = f"{FUNCTIONS.call_open}{name} returned:\n{content}"
        out.append({"role": role, "content": content})
    if tools:
        listing = "\n".join(
            f"{FUNCTIONS.call_open}{t['function']['name']}: {t['function'].get('description', '')}\n"
            f"{json.dumps(t['function'].get('parameters') or {'type': 'object'})}"
            for t in tools
        )
        howto = (
            "You can call these functions:\n" + listing + "\n\nTo call a function, reply with "
            f"`{FUNCTIONS.call_open}<name>:` and a JSON object of its arguments on the next line. "
            f"To answer directly, begin your reply with `{FUNCTIONS.message_open.strip()}`."  # type: ignore[union-attr]
        )
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + howto}
        else:
            out.insert(0, {"role": "system", "content": howto})
    return out


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def offered_tools(request: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tools a request offers the model (none with tool_choice "none")."""
    return (request.get("tools") if request.get("tool_choice") != "none" else None) or None


class ChatRenderer:
    """A chat template turning a job's request into the prompt text the engine generates from.

    The platform renders with it too, to count a prompt's tokens as the engine does.
    """

    def __init__(self, template: str | None, *, eos_token: str = "", bos_token: str = "") -> None:
        self.template = template
        self.style: ToolStyle = HERMES if template_speaks_hermes_tools(template) else FUNCTIONS
        self.formatter = Jinja2ChatFormatter(template=template or CHATML, eos_token=eos_token, bos_token=bos_token)

    @classmethod
    def from_llama(cls, llm: Any, *, chat_template: str | None = None) -> ChatRenderer:
        """The GGUF's own template (or `chat_template`) and special tokens, from a loaded `llama_cpp.Llama`."""
        eos, bos = llm.token_eos(), llm.token_bos()
        return cls(
            chat_template or llm.metadata.get("tokenizer.chat_template"),
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        )

    def render(self, request: dict[str, Any]) -> str:
        tools = offered_tools(request)
        native = self.style is HERMES
        messages = native_messages(request["messages"]) if native else flat_messages(request["messages"], tools)
        kwargs = dict(request.get("chat_template_kwargs") or {})
        try:
            formatter: Any = self.formatter  # llama_cpp types messages and tools as its own TypedDicts
            return formatter(messages=messages, tools=tools if native else None, **kwargs).prompt
        except (jinja2.TemplateError, ValueError, TypeError, KeyError) as exc:
            raise EngineError("invalid_request", f"the model's chat template rejected the messages: {exc}") from exc
