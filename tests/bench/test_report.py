"""The bench's comparison of the platform with each engine-alone baseline, and the goal lines read from it."""

from bench import report


def _run(target: str, *, tokens_per_s: float, engine: str = "llama-cpp", ttft: float = 20.0) -> dict:
    ms = {"p50": ttft, "p95": ttft, "p99": ttft}
    return {"engine": engine, "target": target, "mode": "stream", "concurrency": 1, "ttft_ms": ms, "itl_ms": ms,
            "e2e_ms": ms, "output_tokens_per_s": tokens_per_s, "requests_per_s": 1.0, "cpu_s_per_1k_tokens": 1.0,
            "errors": 0, "cross_talk": 0}  # fmt: skip


def test_the_real_engine_is_compared_with_its_own_code_and_with_llama_cpp_python_s_server():
    runs = [_run("direct", tokens_per_s=50), _run(report.LLAMA_SERVER, tokens_per_s=40, ttft=10),
            _run("platform", tokens_per_s=45, ttft=30)]  # fmt: skip
    comparisons = report.compare(runs)
    assert [(c["baseline"], c["output_tokens_per_s_ratio"]) for c in comparisons] == [
        ("direct", 0.9),
        (report.LLAMA_SERVER, 1.125),
    ]
    assert comparisons[1]["ttft_added_ms"]["p50"] == 20.0
    goals = {g["goal"]: g for g in report.goals(runs, comparisons)}
    assert goals["real engine tokens/s platform/direct (same engine code) at c=1"]["met"] is False
    assert goals["real engine tokens/s platform/llama_cpp.server at c=1"]["met"] is True
    table = report.markdown_table(runs, comparisons)
    assert "| llama-cpp vs llama_cpp.server | 1 | 10.0 / 10.0 → 30.0 / 30.0 | 20.0 / 20.0 |" in table


def test_runs_without_llama_cpp_python_s_server_leave_its_goal_unmeasured():
    runs = [_run("direct", tokens_per_s=50), _run("platform", tokens_per_s=49)]
    comparisons = report.compare(runs)
    assert [c["baseline"] for c in comparisons] == ["direct"]
    goals = {g["goal"]: g for g in report.goals(runs, comparisons)}
    assert goals["real engine tokens/s platform/llama_cpp.server at c=1"]["met"] is None
    assert goals["real engine tokens/s platform/direct (same engine code) at c=1"]["met"] is True
