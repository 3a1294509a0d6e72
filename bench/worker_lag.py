"""Split the platform's `worker` TTFT phase with the workers' own logs: run the bench with
BENCH_WORKER_LOG_LEVEL=INFO, then `python -m bench.worker_lag --database-url URL [--minutes 5]`.

Prints p50/p95/p99 ms of: job assigned (platform) -> job started (worker log), job started -> first
token recorded by the platform's worker socket, and job done (worker log) -> job finished (platform).
Both clocks are this host's."""

from __future__ import annotations

import argparse
import datetime
import json

from bench.report import percentile, worker_log_times
from tests.support.processes import ARTIFACTS


def _worker_times(minutes: float) -> tuple[dict[str, float], dict[str, float]]:
    cutoff = datetime.datetime.now().timestamp() - minutes * 60
    return worker_log_times(p for p in ARTIFACTS.glob("worker-bench-*.log") if p.stat().st_mtime >= cutoff)


def main() -> None:
    import psycopg

    parser = argparse.ArgumentParser(prog="bench.worker_lag")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--minutes", type=float, default=5)
    args = parser.parse_args()
    started, done = _worker_times(args.minutes)
    with psycopg.connect(args.database_url) as conn:
        rows = conn.execute(
            "SELECT id::text, extract(epoch FROM assigned_at), extract(epoch FROM first_token_at), "
            "extract(epoch FROM finished_at) FROM inference_job WHERE created_at > now() - make_interval(mins => %s) "
            "AND first_token_at IS NOT NULL",
            (int(args.minutes) + 1,),
        ).fetchall()
    spans: dict[str, list[float]] = {
        "assigned_to_worker_start": [],
        "worker_start_to_first_token": [],
        "worker_done_to_finished": [],
    }
    for job_id, assigned, first, finished in rows:
        if job_id in started:
            spans["assigned_to_worker_start"].append(started[job_id] - float(assigned))
            spans["worker_start_to_first_token"].append(float(first) - started[job_id])
            if job_id in done and finished is not None:
                spans["worker_done_to_finished"].append(float(finished) - done[job_id])
    out = {
        name: {f"p{p}": round(percentile(v, p) * 1000, 1) for p in (50, 95, 99)} if v else None
        for name, v in spans.items()
    }
    out["jobs"] = len(spans["assigned_to_worker_start"])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
