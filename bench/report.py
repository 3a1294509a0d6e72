"""Numbers from the load generator's results: percentiles, per-run summaries, platform/direct
comparisons, goals, the JSON file, the PNG plots and the results table (docs/performance.md)."""

from __future__ import annotations

import datetime
import math
import re
from pathlib import Path

from bench.load import Result, cross_talk

PERCENTILES = (50, 95, 99)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(values: list[float]) -> dict[str, float | None]:
    out = {}
    for p in PERCENTILES:
        value = percentile(values, p)
        out[f"p{p}"] = None if value is None else round(value * 1000, 3)
    return out


def summarize(
    results: list[Result], wall: float, *, engine: str, target: str, concurrency: int, mode: str, cpu: dict
) -> dict:
    ok = [r for r in results if r.ok]
    tokens = sum(r.tokens for r in ok)
    measured = [r for r in ok if not r.warmup]  # latencies: without the ramp-up of staggered clients
    errors = [r.error for r in results if not r.ok]
    talk = cross_talk(results, scripted=engine == "scripted")
    run = {
        "engine": engine,
        "target": target,
        "concurrency": concurrency,
        "mode": mode,
        "requests": len(results),
        "ok": len(ok),
        "errors": len(errors),
        "error_samples": sorted(set(e or "" for e in errors))[:5],
        "cross_talk": talk["foreign_marker"] + talk["shared_id"] + talk["mixed_ids"],
        "cross_talk_detail": talk,
        "wall_s": round(wall, 3),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall, 2) if wall else None,
        "requests_per_s": round(len(ok) / wall, 2) if wall else None,
        "warmup_requests": len(ok) - len(measured),
        "e2e_ms": _ms([r.e2e for r in measured if r.e2e is not None]),
        "cpu_s": cpu,
        "cpu_s_per_1k_tokens": round(cpu["total"] / tokens * 1000, 4) if tokens else None,
    }
    if mode == "stream":
        run["ttft_ms"] = _ms([r.ttft for r in measured if r.ttft is not None])
        run["itl_ms"] = _ms([gap for r in measured for gap in r.gaps])
        # Per-stream decode rate (tokens after the first / time after the first), then its median.
        rates = [
            (r.tokens - 1) / (r.e2e - r.ttft) for r in measured if r.tokens > 1 and r.e2e and r.ttft and r.e2e > r.ttft
        ]
        run["stream_tokens_per_s_p50"] = round(percentile(rates, 50), 2) if rates else None
    return run


WORKER_LOG_LINE = re.compile(r"(\S+ \S+) INFO sogni_worker: job (\S+): (started|done)")


def worker_log_times(paths) -> tuple[dict[str, float], dict[str, float]]:
    """Per job id, when the worker started it and when it sent done (its INFO log, this host's clock)."""
    started: dict[str, float] = {}
    done: dict[str, float] = {}
    for path in paths:
        for line in Path(path).read_text(errors="replace").splitlines():
            match = WORKER_LOG_LINE.match(line)
            if match:
                when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                stamp = when.replace(tzinfo=datetime.UTC).timestamp()
                (started if match.group(3) == "started" else done)[match.group(2)] = stamp
    return started, done


def phases(results: list[Result], database_url: str, worker_logs=()) -> dict:
    """Where a platform stream's TTFT goes, from the job rows' timestamps (same host clock): request in ->
    job created (auth, validation, job open), created -> assigned (Celery dispatch), assigned -> first token
    recorded by the worker socket, and that token -> the client (channel layer, SSE). With the workers'
    INFO logs, `worker` splits into assigned -> the worker starts the job (`to_worker`) and the worker
    starts -> the platform's socket records the first token (`worker_to_socket`)."""
    import psycopg

    by_id = {next(iter(r.ids)): r for r in results if r.ok and not r.warmup and r.first_at and len(r.ids) == 1}
    if not by_id:
        return {}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT public_id, id::text, extract(epoch FROM created_at), extract(epoch FROM assigned_at), "
            "extract(epoch FROM first_token_at) FROM inference_job WHERE public_id = ANY(%s)",
            (list(by_id),),
        ).fetchall()
    started, _ = worker_log_times(worker_logs)
    spans: dict[str, list[float]] = {"open": [], "dispatch": [], "worker": [], "relay": []}
    split: dict[str, list[float]] = {"to_worker": [], "worker_to_socket": []}
    for public_id, job_id, created, assigned, first in rows:
        if None in (created, assigned, first):
            continue
        result = by_id[public_id]
        created, assigned, first = float(created), float(assigned), float(first)
        spans["open"].append(created - result.sent_at)
        spans["dispatch"].append(assigned - created)
        spans["worker"].append(first - assigned)
        spans["relay"].append(result.first_at - first)
        if job_id in started:
            split["to_worker"].append(started[job_id] - assigned)
            split["worker_to_socket"].append(first - started[job_id])
    out = {name: _ms(values) for name, values in spans.items()}
    if split["to_worker"]:
        out.update({name: _ms(values) for name, values in split.items()})
    return out


# llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`), a second real-engine baseline.
LLAMA_SERVER = "llama-server"
BASELINES = ("direct", LLAMA_SERVER)


def _find(runs: list[dict], **match) -> dict | None:
    return next((r for r in runs if all(r.get(k) == v for k, v in match.items())), None)


def _ratio(a, b):
    return round(a / b, 4) if a is not None and b else None


def _diff(a, b):
    return round(a - b, 3) if a is not None and b is not None else None


def compare(runs: list[dict]) -> list[dict]:
    """Platform against each engine-alone baseline for each (engine, mode, concurrency) that has both:
    `direct` (the same engine code behind `sogni-worker serve-openai`) first, then llama-cpp-python's
    own server (LLAMA_SERVER) for the real engine."""
    out = []
    for baseline in BASELINES:
        out += _compare_with(runs, baseline)
    return out


def _compare_with(runs: list[dict], baseline: str) -> list[dict]:
    out = []
    for platform in (r for r in runs if r["target"] == "platform"):
        key = {k: platform[k] for k in ("engine", "mode", "concurrency")}
        direct = _find(runs, target=baseline, **key)
        if direct is None:
            continue
        row = {**key, "baseline": baseline}
        for metric in ("ttft_ms", "itl_ms", "e2e_ms"):
            if metric in platform:
                row[f"{metric[:-3]}_added_ms"] = {
                    p: _diff(platform[metric][p], direct[metric][p]) for p in platform[metric]
                }
                row[f"{metric[:-3]}_ratio"] = {
                    p: _ratio(platform[metric][p], direct[metric][p]) for p in platform[metric]
                }
        for metric in ("output_tokens_per_s", "requests_per_s", "stream_tokens_per_s_p50", "cpu_s_per_1k_tokens"):
            row[f"{metric}_ratio"] = _ratio(platform.get(metric), direct.get(metric))
        out.append(row)
    return out


def goals(runs: list[dict], comparisons: list[dict]) -> list[dict]:
    def cmp(**match):
        return _find(comparisons, **match) or {}

    c32 = cmp(engine="scripted", mode="stream", concurrency=32, baseline="direct")
    itl = [
        c.get("itl_added_ms", {}).get("p50") for c in comparisons if c["engine"] == "scripted" and c["mode"] == "stream"
    ]
    itl = [v for v in itl if v is not None]
    c128 = _find(runs, engine="scripted", target="platform", mode="stream", concurrency=128)
    llama = cmp(engine="llama-cpp", mode="stream", concurrency=1, baseline="direct")
    llama_server = cmp(engine="llama-cpp", mode="stream", concurrency=1, baseline=LLAMA_SERVER)

    def goal(name, target, measured, met):
        return {"goal": name, "target": target, "measured": measured, "met": met}

    ttft = c32.get("ttft_added_ms", {})
    out = [
        goal("added TTFT p50 at 32 streams", "<= 10 ms", ttft.get("p50"), _le(ttft.get("p50"), 10)),
        goal("added TTFT p99 at 32 streams", "<= 40 ms", ttft.get("p99"), _le(ttft.get("p99"), 40)),
        goal(
            "added inter-token latency p50 (worst concurrency)",
            "<= 1 ms",
            max(itl) if itl else None,
            _le(max(itl) if itl else None, 1),
        ),
        goal(
            "128 streams: errors, cross-talk",
            "0, 0",
            None if c128 is None else [c128["errors"], c128["cross_talk"]],
            None if c128 is None else c128["errors"] == 0 and c128["cross_talk"] == 0,
        ),
        *(
            goal(f"real engine tokens/s platform/{label} at c=1", ">= 0.95", ratio, _ge(ratio, 0.95))
            for label, ratio in (
                ("direct (same engine code)", llama.get("output_tokens_per_s_ratio")),
                ("llama_cpp.server", llama_server.get("output_tokens_per_s_ratio")),
            )
        ),
    ]
    return out


def _le(value, bound):
    return None if value is None else value <= bound


def _ge(value, bound):
    return None if value is None else value >= bound


def plot(runs: list[dict], path: Path, *, engine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = [r for r in runs if r["engine"] == engine and r["mode"] == "stream"]
    if not streams:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, metric, title in zip(
        axes, ("ttft_ms", "itl_ms", "e2e_ms"), ("TTFT", "inter-token latency", "end-to-end"), strict=True
    ):
        for target, color in (("direct", "tab:blue"), (LLAMA_SERVER, "tab:green"), ("platform", "tab:red")):
            rows = sorted((r for r in streams if r["target"] == target), key=lambda r: r["concurrency"])
            if not rows:
                continue
            xs = [r["concurrency"] for r in rows]
            for p, style in (("p50", "-o"), ("p99", "--^")):
                ys = [r[metric][p] for r in rows]
                ax.plot(xs, ys, style, color=color, label=f"{target} {p}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("ms")
        ax.set_title(f"{engine}: {title}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(runs: list[dict], comparisons: list[dict]) -> str:
    """One row per (engine, concurrency) of streaming runs, plus requests/s of short calls."""
    lines = [
        "| engine | conc. | TTFT p50 / p99 ms (direct → platform) | added TTFT p50 / p99 "
        "| ITL p50 ms (direct → platform) "
        "| added ITL p50 | e2e p50 ms (d → p) | tokens/s (d → p, ratio) | short calls req/s (d → p) "
        "| CPU s / 1k tok (platform) | errors | cross-talk |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def order(c):
        return c["engine"] != "scripted", c.get("baseline", "direct") != "direct", c["concurrency"]

    for cmp in sorted((c for c in comparisons if c["mode"] == "stream"), key=order):
        key = {k: cmp[k] for k in ("engine", "concurrency")}
        baseline = cmp.get("baseline", "direct")
        d = _find(runs, target=baseline, mode="stream", **key)
        p = _find(runs, target="platform", mode="stream", **key)
        ds = _find(runs, target=baseline, mode="short", **key) or {}
        ps = _find(runs, target="platform", mode="short", **key) or {}
        engine = cmp["engine"] if baseline == "direct" else f"{cmp['engine']} vs llama_cpp.server"
        lines.append(
            f"| {engine} | {cmp['concurrency']} "
            f"| {_fmt(d['ttft_ms']['p50'])} / {_fmt(d['ttft_ms']['p99'])} → {_fmt(p['ttft_ms']['p50'])} / "
            f"{_fmt(p['ttft_ms']['p99'])} "
            f"| {_fmt(cmp['ttft_added_ms']['p50'])} / {_fmt(cmp['ttft_added_ms']['p99'])} "
            f"| {_fmt(d['itl_ms']['p50'], 2)} → {_fmt(p['itl_ms']['p50'], 2)} | {_fmt(cmp['itl_added_ms']['p50'], 2)} "
            f"| {_fmt(d['e2e_ms']['p50'], 0)} → {_fmt(p['e2e_ms']['p50'], 0)} "
            f"| {_fmt(d['output_tokens_per_s'])} → {_fmt(p['output_tokens_per_s'])} "
            f"({_fmt(cmp['output_tokens_per_s_ratio'], 3)}) "
            f"| {_fmt(ds.get('requests_per_s'))} → {_fmt(ps.get('requests_per_s'))} "
            f"| {_fmt(p['cpu_s_per_1k_tokens'], 3)} | {p['errors'] + ps.get('errors', 0)} | {p['cross_talk']} |"
        )
    return "\n".join(lines)
