"""py-spy sampling of the platform's processes during a run, summarised as the functions where the
samples spend their time (self) and the frames they pass through (inclusive)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy") if (Path(sys.executable).parent / "py-spy").exists() else None
    )


def record(pid: int, out: Path, *, duration: int, rate: int = 250) -> subprocess.Popen | None:
    """Samples of the thread holding the GIL only (`--gil`): a process's Python runs on one core at a
    time, and threads waiting for the GIL would otherwise show as busy wherever they wait."""
    exe = py_spy()
    if exe is None:
        return None
    args = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(duration),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--threads",
        "--gil",
        "--nonblocking",
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    file = where.split(":")[0].rsplit("/", 1)[-1]
    return f"{name} ({file})"


# Leaf frames that are a thread waiting (event loop poll, idle pool threads, lock or socket waits), not work.
IDLE = (
    "select (selectors.py)",
    "poll (eventio.py)",
    "wait (threading.py)",
    "_worker (thread.py)",
    "Connection.wait (connection.py)",
    "_poll (",
    "acquire",
    "sleep",
    "WaitForSingleObject",
)


def summarize(path: Path, *, top: int = 25) -> dict:
    """Top frames by self and inclusive samples of busy stacks; idle waits (IDLE) counted apart."""
    if not path.exists():
        return {"error": f"no profile at {path}"}
    own, inclusive, total, idle = Counter(), Counter(), 0, 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if any(mark in frames[-1] for mark in IDLE):
            idle += n
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def pct(counter: Counter) -> list[list]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {"busy_samples": total, "idle_samples": idle, "self_pct": pct(own), "inclusive_pct": pct(inclusive)}
