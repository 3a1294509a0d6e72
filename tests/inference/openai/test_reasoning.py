"""<think>…</think> goes to reasoning and never leaks into content, however the stream is split."""

import itertools

import pytest

from inference.openai.reasoning import ThinkSplitter

# (full engine output, starts inside thinking, expected reasoning, expected content)
STREAMS = [
    ("<think>\nLet me think.\n</think>\n\nThe answer is 4.", False, "Let me think.\n", "The answer is 4."),
    ("Hmm, 2+2.</think>\nIt is 4.", True, "Hmm, 2+2.", "It is 4."),
    ("<think>\nrepeated open</think>done", True, "repeated open", "done"),
    ("<think>never closed <th", False, "never closed <th", ""),
    ("Plain <b>text</b> with < and </think and <th", False, "", "Plain <b>text</b> with < and </think and <th"),
    ("Hi <think>a<b</think> there", False, "a<b", "Hi there"),
    ("<think></think>Answer", False, "", "Answer"),
    ("<<think>>x</think>>", False, ">x", "<>"),
    ("<think>one</think>\nmid <think>two</think>\n end", False, "onetwo", "mid end"),
    ("   \n", True, "", ""),
    ("<think>\n\n</think>\n\n", False, "", ""),
]


def run(pieces, in_think):
    splitter = ThinkSplitter(in_think=in_think)
    reasoning, content = [], []
    for piece in pieces:
        r, c = splitter.feed(piece)
        reasoning.append(r)
        content.append(c)
    r, c = splitter.flush()
    return "".join(reasoning + [r]), "".join(content + [c])


def splits(text, cuts):
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize(("text", "in_think", "reasoning", "content"), STREAMS)
def test_whole_text_in_one_delta(text, in_think, reasoning, content):
    assert run([text], in_think) == (reasoning, content)


@pytest.mark.parametrize(("text", "in_think", "reasoning", "content"), STREAMS)
def test_every_single_split_point(text, in_think, reasoning, content):
    for cut in range(len(text) + 1):
        assert run(splits(text, [cut]), in_think) == (reasoning, content), f"split at {cut}: {splits(text, [cut])}"


@pytest.mark.parametrize(("text", "in_think", "reasoning", "content"), STREAMS)
def test_every_pair_of_split_points(text, in_think, reasoning, content):
    for a, b in itertools.combinations(range(len(text) + 1), 2):
        assert run(splits(text, [a, b]), in_think) == (reasoning, content), f"split at {a},{b}"


@pytest.mark.parametrize(("text", "in_think", "reasoning", "content"), STREAMS)
def test_char_by_char(text, in_think, reasoning, content):
    assert run(list(text), in_think) == (reasoning, content)


@pytest.mark.parametrize(("text", "in_think", "reasoning", "content"), STREAMS)
def test_think_text_never_reaches_content_before_the_close(text, in_think, reasoning, content):
    """Streaming char by char, content emitted so far is always a prefix of the final content."""
    splitter = ThinkSplitter(in_think=in_think)
    emitted = ""
    for char in text:
        emitted += splitter.feed(char)[1]
        assert content.startswith(emitted)


def test_text_is_not_held_back_without_reason():
    splitter = ThinkSplitter()
    assert splitter.feed("Hello") == ("", "Hello")
    assert splitter.feed(" wor<") == ("", " wor")
    assert splitter.feed("ld") == ("", "<ld")
    assert ThinkSplitter(in_think=True).feed("step one") == ("step one", "")
    assert ThinkSplitter(in_think=True).feed("<think>step one") == ("step one", "")
