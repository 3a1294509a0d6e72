"""`make bench`: the platform's production topology against the engine alone, same load generator.

    .venv/bin/python -m bench.run [--quick] [--name NAME] [--server daphne|uvicorn] [--profile]

Writes bench/results/runs/NAME.json, NAME-scripted.png, NAME-llama-cpp.png and NAME.md (the results table
of docs/performance.md); bench/results/runs/ is ignored by git, bench/results/baseline* is the published baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from pathlib import Path

from bench import profile, report, topology
from bench.load import Target, drive

RESULTS = Path(__file__).resolve().parent / "results" / "runs"


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=None, help="results file name (default: <server>[-quick]-<UTC time>)")
    parser.add_argument("--quick", action="store_true", help="smoke run: concurrency 1 and 2, few requests, no llama")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--server-processes", type=int, default=1, help="uvicorn --workers (default 1)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--rounds", type=int, default=4, help="streams per concurrent client (default 4)")
    parser.add_argument(
        "--arrival",
        choices=["staggered", "burst"],
        default="staggered",
        help="scripted streams: clients start spread over one reply's duration, each with one "
        "warm-up request left out of the latencies (default), or all at once",
    )
    parser.add_argument("--worker-slots", type=int, default=8, help="slots per scripted sogni-worker (default 8)")
    parser.add_argument("--rate", type=float, default=50.0, help="scripted tokens/s (default 50)")
    parser.add_argument("--tokens", type=int, default=64, help="scripted tokens per reply (default 64)")
    parser.add_argument("--no-llama", action="store_true", help="skip the real-engine runs")
    parser.add_argument("--llama-concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--llama-requests", type=int, default=12)
    parser.add_argument("--llama-tokens", type=int, default=128)
    parser.add_argument(
        "--llama-threads", type=int, default=1, help="llama.cpp threads (default 1: one core stays for the platform)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the server, Celery and a worker")
    parser.add_argument("--profile-concurrency", type=int, default=32, help="the concurrency --profile samples")
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sogni_bench")
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the server and Celery, e.g. DB_POOL_MAX_SIZE=16",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency = args.concurrency or [1, 2]
        args.rounds, args.no_llama, args.tokens, args.rate = 2, True, min(args.tokens, 8), max(args.rate, 200)
    args.concurrency = args.concurrency or [1, 8, 32, 128]
    args.name = (
        args.name or f"{args.server}{'-quick' if args.quick else ''}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    return args


def _pids(processes) -> list[int]:
    return [p.popen.pid for p in processes]


# The real engine gets one fixed prompt on both sides (a nonce would change its work); cross-talk is then
# checked on completion ids only.
LLAMA_PROMPT = "Write a long story about a lighthouse keeper and his cat."


async def _drive_counted(target: Target, *, engine, concurrency, mode, requests, max_tokens, cpu_groups, ramp_s=0.0):
    """One load run: its results, wall time and the CPU seconds of each process group."""
    before = {name: topology.cpu_seconds(pids) for name, pids in cpu_groups.items()}
    extra = {"prompt": LLAMA_PROMPT, "marker": False} if engine == "llama-cpp" else {}
    results, wall = await drive(
        target,
        concurrency=concurrency,
        requests=requests,
        stream=mode == "stream",
        max_tokens=max_tokens,
        ramp_s=ramp_s,
        **extra,
    )
    cpu = {name: topology.cpu_seconds(pids) - before[name] for name, pids in cpu_groups.items()}
    return results, wall, cpu


async def _measure_interleaved(
    targets, *, rounds: int, requests: int, groups: dict, db=None, worker_logs=(), **kwargs
) -> list[dict]:
    """Each target's run, built from `rounds` alternating turns (direct, platform, direct, ...), so a
    drift in the machine's speed during the run weighs on both sides alike."""
    totals = {target.name: ([], 0.0, {}) for target in targets}
    for _ in range(rounds):
        for target in targets:
            results, wall, cpu = await _drive_counted(
                target, requests=requests, cpu_groups=groups[target.name], **kwargs
            )
            done, walls, cpus = totals[target.name]
            totals[target.name] = (done + results, walls + wall, {k: cpus.get(k, 0) + v for k, v in cpu.items()})
    return [_summary(target, *totals[target.name], db=db, worker_logs=worker_logs, **kwargs) for target in targets]


async def _measure(target: Target, *, cpu_groups, db=None, worker_logs=(), **kwargs) -> dict:
    results, wall, cpu = await _drive_counted(target, cpu_groups=cpu_groups, **kwargs)
    return _summary(target, results, wall, cpu, db=db, worker_logs=worker_logs, **kwargs)


def _summary(target, results, wall, cpu, *, engine, concurrency, mode, db=None, worker_logs=(), **_) -> dict:
    cpu = {name: round(seconds, 3) for name, seconds in cpu.items()}
    cpu["total"] = round(sum(cpu.values()), 3)
    run = report.summarize(
        results, wall, engine=engine, target=target.name, concurrency=concurrency, mode=mode, cpu=cpu
    )
    run["load_average"] = topology.load_average()
    if db and target.name == "platform" and mode == "stream":
        run["ttft_phases_ms"] = report.phases(results, db, worker_logs)
    print(
        f"  {engine:9} {target.name:8} c={concurrency:<3} {mode:6} n={run['requests']:<4} err={run['errors']} "
        f"xtalk={run['cross_talk']} ttft50={run.get('ttft_ms', {}).get('p50')} "
        f"itl50={run.get('itl_ms', {}).get('p50')} "
        f"e2e50={run['e2e_ms']['p50']} tok/s={run['output_tokens_per_s']} req/s={run['requests_per_s']} "
        f"cpu/1k={run['cpu_s_per_1k_tokens']} phases={json.dumps(run.get('ttft_phases_ms', {}))}",
        flush=True,
    )
    return run


async def _scripted(args, env, keys, server, celery, topo, out: dict) -> None:
    top = max(args.concurrency)
    slots = min(topology.MAX_SLOTS, args.worker_slots, top)
    count = max(1, math.ceil(top / slots))
    engine = {"slots": slots, "rate": args.rate, "tokens": args.tokens, "threads": 1}
    workers = topology.start_workers(
        url=server.extra["url"],
        key=keys["operator_key"],
        engine="scripted",
        model=topology.SCRIPTED_MODEL,
        count=count,
        **engine,
    )
    topo.add(*workers)
    # The engine alone: one asyncio server carries up to 64 streams (its slot ceiling).
    direct_slots = min(topology.MAX_SLOTS, top)
    directs = [
        topology.start_direct("scripted", **{**engine, "slots": direct_slots})
        for _ in range(math.ceil(top / direct_slots))
    ]
    topo.add(*directs)
    topology.wait_models_online(server.extra["url"], keys["client_key"], topology.SCRIPTED_MODEL, workers, count)
    out["config"]["scripted"] = {
        **engine,
        "workers": count,
        "direct_servers": len(directs),
        "direct_slots": direct_slots,
        "model": topology.SCRIPTED_MODEL,
    }
    platform = Target("platform", [server.extra["url"]], topology.SCRIPTED_MODEL, keys["client_key"])
    direct = Target("direct", [d.extra["url"] for d in directs], "direct-scripted")
    groups = {
        "platform": {"server": _pids([server]), "celery": _pids([celery]), "workers": _pids(workers)},
        "direct": {"engine": _pids(directs)},
    }
    for target in (direct, platform):  # warm connections, imports and caches
        await drive(target, concurrency=2, requests=4, stream=True, max_tokens=4)
    ramp_s = args.tokens / args.rate if args.arrival == "staggered" else 0.0
    for c in args.concurrency:
        for target in (direct, platform):
            spy = []
            if args.profile and target.name == "platform" and c == args.profile_concurrency:
                duration = max(5, int(args.rounds * args.tokens / args.rate) + 2)
                for name, proc in (("server", server), ("celery", celery), ("worker", workers[0])):
                    path = args.results_dir / f"{args.name}-profile-{name}.txt"
                    spy.append((name, path, profile.record(proc.popen.pid, path, duration=duration)))
            out["runs"].append(
                await _measure(
                    target,
                    engine="scripted",
                    concurrency=c,
                    mode="stream",
                    requests=c * args.rounds,
                    max_tokens=args.tokens,
                    ramp_s=ramp_s if c > 1 else 0.0,
                    cpu_groups=groups[target.name],
                    db=args.database_url,
                    worker_logs=[w.log_path for w in workers],
                )
            )
            for name, path, popen in spy:
                if popen is not None:
                    popen.wait(60)
                    out.setdefault("profile", {})[name] = profile.summarize(path)
        for target in (direct, platform):
            out["runs"].append(
                await _measure(
                    target,
                    engine="scripted",
                    concurrency=c,
                    mode="short",
                    requests=max(c * 2, 16),
                    max_tokens=1,
                    cpu_groups=groups[target.name],
                )
            )
    topo.remove(workers + directs)


async def _llama(args, env, keys, server, celery, topo, out: dict) -> None:
    engine = {"slots": 1, "rate": 0, "tokens": 1, "threads": args.llama_threads}
    workers = topology.start_workers(
        url=server.extra["url"],
        key=keys["operator_key"],
        engine="llama-cpp",
        model=topology.LLAMA_MODEL,
        count=1,
        **engine,
    )
    topo.add(*workers)
    direct_proc = topology.start_direct("llama-cpp", **engine)
    topo.add(direct_proc)
    server_proc = topology.start_llama_server(threads=args.llama_threads)
    topo.add(server_proc)
    topology.wait_models_online(server.extra["url"], keys["client_key"], topology.LLAMA_MODEL, workers, 1)
    out["config"]["llama-cpp"] = {
        **engine,
        "model": topology.LLAMA_MODEL,
        "n_ctx": 1024,
        "max_tokens": args.llama_tokens,
        "direct": "sogni-worker serve-openai --engine llama-cpp (same engine code, same flags)",
        report.LLAMA_SERVER: "python -m llama_cpp.server (llama-cpp-python's own server, same model and flags)",
    }
    platform = Target("platform", [server.extra["url"]], topology.LLAMA_MODEL, keys["client_key"])
    direct = Target("direct", [direct_proc.extra["url"]], "direct-llama-cpp")
    llama_server = Target(report.LLAMA_SERVER, [server_proc.extra["url"]], "smollm2")
    groups = {
        "platform": {"server": _pids([server]), "celery": _pids([celery]), "workers": _pids(workers)},
        "direct": {"engine": _pids([direct_proc])},
        report.LLAMA_SERVER: {"engine": _pids([server_proc])},
    }
    targets = (direct, llama_server, platform)
    for target in targets:
        await drive(target, concurrency=1, requests=1, stream=True, max_tokens=8, prompt=LLAMA_PROMPT, marker=False)
    for c in args.llama_concurrency:
        if c == 1:  # the throughput ratio goal: alternate the sides, two requests a turn
            out["runs"] += await _measure_interleaved(
                targets,
                rounds=max(args.llama_requests // 2, 1),
                requests=2,
                groups=groups,
                engine="llama-cpp",
                concurrency=1,
                mode="stream",
                max_tokens=args.llama_tokens,
                db=args.database_url,
                worker_logs=[w.log_path for w in workers],
            )
            continue
        for target in targets:
            out["runs"].append(
                await _measure(
                    target,
                    engine="llama-cpp",
                    concurrency=c,
                    mode="stream",
                    requests=max(args.llama_requests, c),
                    max_tokens=args.llama_tokens,
                    cpu_groups=groups[target.name],
                    db=args.database_url,
                    worker_logs=[w.log_path for w in workers],
                )
            )
    topo.remove(workers + [direct_proc, server_proc])


async def main_async(args) -> dict:
    tag = uuid.uuid4().hex[:8]
    env = topology.platform_env(database_url=args.database_url, redis_url=args.redis_url, tag=tag)
    env.update(item.split("=", 1) for item in args.env)
    os.environ.update({k: v for k, v in env.items() if k not in ("DATABASE_URL", "REDIS_URL")})
    out = {
        "name": args.name,
        "started_at": topology.now_iso(),
        "machine": topology.machine(),
        "load_average_start": topology.load_average(),
        "config": {
            "server": args.server,
            "server_processes": args.server_processes,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "arrival": args.arrival,
            "quick": args.quick,
            "celery": "threads pool, concurrency 8, prefetch 1, acks late, no result backend",
            "database": args.database_url.rsplit("/", 1)[-1],
            "env": args.env,
        },
        "runs": [],
    }
    keys = topology.database_prepare({**os.environ, **env})
    topo = topology.Topology()
    try:
        celery = topology.start_celery(env)
        topo.add(celery)
        server = topology.start_server(env, server=args.server, processes=args.server_processes)
        topo.add(server)
        await _scripted(args, env, keys, server, celery, topo, out)
        if not args.no_llama:
            await _llama(args, env, keys, server, celery, topo, out)
    finally:
        topo.stop()
    out["finished_at"] = topology.now_iso()
    out["load_average_end"] = topology.load_average()
    out["comparisons"] = report.compare(out["runs"])
    out["goals"] = report.goals(out["runs"], out["comparisons"])
    return out


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = asyncio.run(main_async(args))
    path = args.results_dir / f"{args.name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    table = report.markdown_table(out["runs"], out["comparisons"])
    (args.results_dir / f"{args.name}.md").write_text(table + "\n")
    for engine in ("scripted", "llama-cpp"):
        report.plot(out["runs"], args.results_dir / f"{args.name}-{engine}.png", engine=engine)
    print(table)
    for goal in out["goals"]:
        print(f"goal {goal['goal']}: target {goal['target']}, measured {goal['measured']}, met {goal['met']}")
    print(f"results: {path}  load average {out['load_average_start']} -> {out['load_average_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
