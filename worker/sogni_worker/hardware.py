"""A short hardware summary for hello: CPU model, cores, RAM, NVIDIA GPUs when nvidia-smi exists."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[dict[str, Any]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines()[:16]:
        name, _, memory = line.partition(",")
        gpus.append({"name": name.strip()[:100], "memory_mib": int(memory) if memory.strip().isdigit() else None})
    return gpus


def hardware_summary() -> dict[str, Any]:
    ram = _ram_bytes()
    return {
        "cpu": _cpu_model()[:200],
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "os": f"{platform.system()} {platform.release()}"[:100],
        "gpus": _gpus(),
    }
