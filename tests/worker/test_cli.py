"""`sogni-worker` refuses bad arguments before it connects or loads anything."""

import subprocess
import sys

import pytest

from sogni_worker.cli import main

OK = ["--api-key", "sk-sogni-x", "--engine", "scripted", "--models", "m"]


@pytest.fixture(autouse=True)
def no_worker_env(monkeypatch):
    for name in ("SOGNI_API_KEY", "SOGNI_MODELS", "SOGNI_ENGINE", "SOGNI_PLATFORM"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--engine", "scripted", "--models", "m"], "SOGNI_API_KEY"),
        ([*OK, "--platform", "ftp://example.com"], "ws://"),
        ([*OK, "--slots", "0"], "between 1 and 64"),
        ([*OK, "--slots", "65"], "between 1 and 64"),
        ([*OK, "--slots", "two"], "not a number"),
        ([*OK, "--engine", "magic"], "invalid choice"),
        (["--api-key", "k", "--engine", "scripted"], "--models is required"),
        (["--api-key", "k", "--engine", "openai"], "--models is required"),
        ([*OK, "--name", "x" * 65], "1-64"),
        ([*OK, "--scripted-rate", "-1"], ">= 0"),
        ([*OK, "--scripted-tokens", "0"], ">= 1"),
        (["--api-key", "k", "--model-path", "/nonexistent.gguf", "--models", "m"], "is not a file"),
        (["--api-key", "k", "--engine", "openai", "--models", "m", "--openai-base-url", "localhost:8080"], "http"),
        (["--api-key", "k", "--engine", "scripted", "--models", *[f"m{i}" for i in range(33)]], "1-32"),
        (["serve-openai", "--engine", "openai"], "invalid choice"),
        (["serve-openai", "--port", "70000"], "between 1 and 65535"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err


def test_help_lists_every_engine_and_the_key_variable():
    result = subprocess.run([sys.executable, "-m", "sogni_worker.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for word in ("llama-cpp", "openai", "scripted", "SOGNI_API_KEY", "--slots", "--model-path", "--openai-base-url"):
        assert word in result.stdout
