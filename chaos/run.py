"""`make chaos`: each scenario against the production topology, one table.

    .venv/bin/python -m chaos.run [--scenario NAME ...] [--fast] [--name NAME] [--results-dir DIR]

Writes DIR/NAME.json and DIR/NAME.md (default bench/results/runs/, ignored by git). The exit status is 0
whether or not the acceptance checks are met: the table says which are.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "runs"
STRIPE_SECRET = "whsec_chaos_local"
HOLD_GRACE_S = 20

COLUMNS = [
    ("scenario", "scenario"),
    ("requests", "requests"),
    ("failed", "failed"),
    ("longest_stall_s", "longest stall (s)"),
    ("recover_s", "time to recover (s)"),
    ("never_ended", "never ended"),
    ("holds_open", "holds open"),
    ("double_charges", "double charges"),
    ("workers_faulted", "workers wrongly faulted"),
    ("ledger_violations", "ledger violations"),
]


def _args(argv):
    from chaos.scenarios import FAST, SCENARIOS

    parser = argparse.ArgumentParser(prog="chaos.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="default: all")
    parser.add_argument("--fast", action="store_true", help=f"the scenarios `make test` runs: {', '.join(FAST)}")
    parser.add_argument("--name", default=f"chaos-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--database-url", default=os.environ.get("CHAOS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sogni_chaos")
    )
    args = parser.parse_args(argv)
    args.scenario = args.scenario or (FAST if args.fast else list(SCENARIOS))
    return args


def markdown(outcomes: list[dict]) -> str:
    def cell(value) -> str:
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " | checks met |"]
    lines.append("|" + "---|" * (len(COLUMNS) + 1))
    for out in outcomes:
        met = sum(check["met"] for check in out["checks"])
        lines.append("| " + " | ".join(cell(out[key]) for key, _ in COLUMNS) + f" | {met}/{len(out['checks'])} |")
    lines += ["", "| scenario | check | measured | target | met |", "|---|---|---|---|---|"]
    for out in outcomes:
        for check in out["checks"]:
            lines.append(
                f"| {out['scenario']} | {check['check']} | {cell(check['measured'])} | {check['target']} | "
                f"{'yes' if check['met'] else '**no**'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from bench import topology
    from chaos.topology import platform_env
    from tests.support.processes import RedisServer

    redis = RedisServer()
    redis.start()
    env = platform_env(
        database_url=args.database_url, redis_url=redis.url, hold_grace_s=HOLD_GRACE_S, stripe_secret=STRIPE_SECRET
    )
    os.environ.update(env)
    keys = topology.database_prepare(dict(os.environ))

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no log line per request
    from chaos.scenarios import LONG, RATE, SCENARIOS
    from chaos.topology import Platform

    platform = Platform(env=env, keys=keys)
    outcomes = []
    started = topology.now_iso()
    try:
        platform.start()
        platform.start_workers(count=2, slots=10, rate=RATE, tokens=LONG)
        for name in args.scenario:
            print(f"chaos: {name} ...", flush=True)
            platform.wait_workers_online()
            out = SCENARIOS[name](platform, redis).as_dict()
            out["name"] = name
            outcomes.append(out)
            print(json.dumps(out), flush=True)
    finally:
        platform.stop()
        redis.stop()
    result = {
        "name": args.name,
        "started_at": started,
        "finished_at": topology.now_iso(),
        "machine": topology.machine(),
        "load_average_end": topology.load_average(),
        "config": {
            "streams": 16,
            "workers": "2 scripted sogni-workers x 10 slots",
            "rate_tokens_per_s": RATE,
            "hold_orphan_grace_s": HOLD_GRACE_S,
            "platform": "manage.py runlocal --no-worker (daphne, Celery worker and beat supervised by runlocal)",
        },
        "scenarios": outcomes,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    table = markdown(outcomes)
    (args.results_dir / f"{args.name}.md").write_text(table + "\n")
    print(table)
    print(f"results: {args.results_dir / args.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
