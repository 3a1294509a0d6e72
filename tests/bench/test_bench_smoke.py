"""`make bench` at tiny scale, so the harness cannot rot: it starts the real topology (PostgreSQL,
Redis, daphne, Celery, scripted `sogni-worker`s, the engine alone), drives both, and writes its
results. No timing assertions: only that it ran, measured and found every reply its own."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from bench.load import Result, cross_talk
from tests.support.processes import ROOT

pytestmark = pytest.mark.e2e

RUN_KEYS = {"engine", "target", "concurrency", "mode", "requests", "errors", "cross_talk", "wall_s", "output_tokens",
            "output_tokens_per_s", "requests_per_s", "e2e_ms", "cpu_s", "cpu_s_per_1k_tokens"}  # fmt: skip
STREAM_KEYS = {"ttft_ms", "itl_ms"}


def _bench_database_url() -> str:
    parsed = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(parsed._replace(path=f"{parsed.path}_bench_smoke"))


def test_quick_bench_writes_results_with_no_errors_and_no_cross_talk(tmp_path):
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--name", name, "--results-dir", str(tmp_path),
         "--database-url", _bench_database_url(), "--redis-url", os.environ["REDIS_URL"]],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads((tmp_path / f"{name}.json").read_text())

    assert {"machine", "load_average_start", "load_average_end", "config", "runs", "comparisons", "goals"} <= set(out)
    runs = out["runs"]
    # direct and platform, streaming and short calls, at concurrency 1 and 2
    assert {(r["target"], r["mode"], r["concurrency"]) for r in runs} == {
        (t, m, c) for t in ("direct", "platform") for m in ("stream", "short") for c in (1, 2)
    }
    tokens = out["config"]["scripted"]["tokens"]
    for run in runs:
        assert RUN_KEYS <= set(run), run
        assert run["errors"] == 0, run["error_samples"]
        assert run["cross_talk"] == 0 and run["cross_talk_detail"]["missing_marker"] == 0, run
        assert run["requests"] > 0 and run["ok"] == run["requests"]
        if run["mode"] == "stream":
            assert STREAM_KEYS <= set(run)
            assert run["output_tokens"] == run["requests"] * tokens  # every stream got its whole reply
            assert all(run[m]["p50"] is not None for m in ("ttft_ms", "itl_ms", "e2e_ms"))
            if run["target"] == "platform":  # where the platform's TTFT goes, from its job rows
                phases = {"open", "dispatch", "worker", "relay", "to_worker", "worker_to_socket"}
                assert set(run["ttft_phases_ms"]) == phases
        else:
            assert run["output_tokens"] == run["requests"]  # max_tokens 1
    assert run["cpu_s"].keys() >= {"total"}
    platform_cpu = [r["cpu_s"] for r in runs if r["target"] == "platform"]
    assert all({"server", "celery", "workers"} <= set(cpu) for cpu in platform_cpu)
    assert {(c["mode"], c["concurrency"]) for c in out["comparisons"]} == {
        (m, c) for m in ("stream", "short") for c in (1, 2)
    }
    assert (tmp_path / f"{name}-scripted.png").stat().st_size > 0
    assert "| scripted | 2 |" in (tmp_path / f"{name}.md").read_text()


def test_cross_talk_check_flags_a_foreign_marker_and_a_shared_id():
    """The checker the bench relies on is not vacuous."""
    a, b = Result(nonce="n0123456789abcdefx"), Result(nonce="nfedcba9876543210x")
    a.ok = b.ok = True
    a.content, a.ids = "n0123456789abcdefx tok1 nfedcba9876543210x", {"chatcmpl-1"}
    b.content, b.ids = "nfedcba9876543210x tok1", {"chatcmpl-1"}
    found = cross_talk([a, b], scripted=True)
    assert found["foreign_marker"] == 1
    assert found["shared_id"] == 1
    b.content, b.ids = "tok1", {"chatcmpl-2"}
    a.content = "n0123456789abcdefx tok1"
    assert cross_talk([a, b], scripted=True) == {
        "foreign_marker": 0,
        "missing_marker": 1,
        "shared_id": 0,
        "mixed_ids": 0,
    }


def test_bench_is_a_make_target():
    assert "\nbench: install" in Path(ROOT / "Makefile").read_text()
