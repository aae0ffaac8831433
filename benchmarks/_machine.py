"""What every benchmark records about the machine it ran on, and how it saves its results.

A helper module (``run.py`` skips files starting with ``_``), imported by the benchmark scripts,
which run with ``benchmarks/`` first on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["busy_cpu_seconds", "machine_info", "write_json"]


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy so far (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal, no guest


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:  # not Linux: platform's
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def machine_info(*packages: str) -> dict[str, Any]:
    """CPUs, platform, Python, the versions of ``packages`` and the load average now."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }
    info.update({name: metadata.version(name) for name in packages})
    info["loadavg_at_start"] = list(os.getloadavg())
    return info


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Save results as indented JSON (creating the folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nJSON written to {path}")
