#!/usr/bin/env python3
"""Run every benchmark script in benchmarks/ (``make bench`` calls this).

    .venv/bin/python benchmarks/run.py [--quick] [NAME ...]

Each ``benchmarks/*.py`` other than this file (and other than ``_*.py`` helpers) is run in turn
with the same interpreter, from the repository root; ``--quick`` is passed on, and every script
must accept it (small sizes, for a smoke run). Give NAMEs (``envelope``) to run only those.
Results land in benchmarks/results/ (git-ignored). Exits non-zero if any script failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def scripts() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py")
                  if p.name != Path(__file__).name and not p.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks in benchmarks/.")
    parser.add_argument("--quick", action="store_true",
                        help="pass --quick to every benchmark (small sizes)")
    parser.add_argument("names", nargs="*", help="only these benchmarks (file name without .py)")
    args = parser.parse_args(argv)

    found = scripts()
    if args.names:
        unknown = set(args.names) - {p.stem for p in found}
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))} "
                         f"(have: {', '.join(p.stem for p in found)})")
        found = [p for p in found if p.stem in args.names]

    failed: list[str] = []
    for script in found:
        cmd = [sys.executable, str(script.relative_to(ROOT))] + (["--quick"] if args.quick else [])
        print(f"==> {' '.join(cmd)}", flush=True)
        started = time.monotonic()
        code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
        took = time.monotonic() - started
        print(f"<== {script.stem}: {'ok' if code == 0 else f'FAILED (exit {code})'} "
              f"in {took:.0f} s\n", flush=True)
        if code != 0:
            failed.append(script.stem)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(found)} benchmark(s) ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
