#!/usr/bin/env python3
"""Run the benchmarks of issue 15 one after another, each with few runs, and say how long each took.

Every benchmark measures its ratio against a peer in the same run and prints its goals next to
it; ``--record`` appends each one's section to bench/RESULTS.md. The export benchmark is not in
the set (it takes minutes on its own): ``python bench/bench_export.py``.

    python bench/run_all.py [--record] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> arguments: runs kept low so the whole set fits in 10 minutes on 2 shared cores
BENCHMARKS: dict[str, list[str]] = {
    "dicomweb": ["bench_dicomweb.py", "--runs", "3"],
    "gateway": ["bench_gateway.py", "--runs", "5"],  # its 100-row QIDO (~150 ms) needs 5 for a steady median
    "viewer": ["bench_viewer.py", "--runs", "3"],
    "static_search": ["bench_static_search.py", "--runs", "3"],
    "host_start": ["bench_host_start.py", "--runs", "11"],
    "static_filter": ["bench_static_filter.py", "--runs", "3"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="each benchmark appends to bench/RESULTS.md")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    failed = []
    took: dict[str, float] = {}
    for name, argv in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        command = [sys.executable, str(HERE / argv[0]), *argv[1:], *(["--record"] if args.record else [])]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        if subprocess.run(command).returncode != 0:
            failed.append(name)
        took[name] = time.perf_counter() - start
        print(f"== {name}: {took[name]:.0f} s", flush=True)
    summary = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in took.items())
    print(f"{summary}; total {sum(took.values()):.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
