"""Split a reasoning model's text stream into reasoning and content at <think>…</think>.

Tags may arrive split across deltas at any position: a possible tag prefix at the end of a delta
is held back until the next delta decides it, so think text never leaks into content.
"""

OPEN = "<think>"
CLOSE = "</think>"


def _held_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    """feed(text) -> (reasoning, content); flush() at the end of the stream.

    `in_think=True` for templates that open <think> in the prompt: the stream starts inside
    thinking (a leading <think> the model repeats anyway is dropped). Whitespace right after
    <think> and right after </think> is what templates emit around the tags and is stripped.
    An unclosed <think> at the end is flushed as reasoning.
    """

    def __init__(self, *, in_think: bool = False):
        self.in_think = in_think
        self._buffer = ""
        self._skip_open = in_think
        self._strip = in_think  # strip leading whitespace of the next piece

    def _emit(self, text: str, reasoning: list[str], content: list[str]) -> None:
        if self._strip:
            text = text.lstrip()
            if not text:
                return
            self._strip = False
        (reasoning if self.in_think else content).append(text)

    def feed(self, text: str) -> tuple[str, str]:
        self._buffer += text
        reasoning: list[str] = []
        content: list[str] = []
        if self._skip_open:
            stripped = self._buffer.lstrip()
            if stripped.startswith(OPEN):
                self._buffer = stripped[len(OPEN) :]
                self._skip_open = False
            elif OPEN.startswith(stripped):
                return "", ""
            else:
                self._skip_open = False
        while True:
            tag = CLOSE if self.in_think else OPEN
            index = self._buffer.find(tag)
            if index < 0:
                break
            self._emit(self._buffer[:index], reasoning, content)
            self._buffer = self._buffer[index + len(tag) :]
            self.in_think = not self.in_think
            self._strip = True
        held = _held_suffix(self._buffer, CLOSE if self.in_think else OPEN)
        self._emit(self._buffer[: len(self._buffer) - held], reasoning, content)
        self._buffer = self._buffer[len(self._buffer) - held :]
        return "".join(reasoning), "".join(content)

    def flush(self) -> tuple[str, str]:
        reasoning: list[str] = []
        content: list[str] = []
        self._emit(self._buffer, reasoning, content)
        self._buffer = ""
        return "".join(reasoning), "".join(content)
