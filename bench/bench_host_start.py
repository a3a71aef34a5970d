#!/usr/bin/env python3
"""Host start with 50 installed dummy extensions, against a bare ``python -c "import pluggy"``.

Each dummy extension is a real distribution (a ``.dist-info`` folder with an
``entry_points.txt`` in the ``datasources.extensions`` group, and a module) on
``PYTHONPATH``, so discovery goes through importlib-metadata as for pip-installed ones.
Measured: a fresh interpreter that imports ``datasources``, builds a ``Host`` with no
configured sources (which discovers and loads every extension), and lists the
namespaces. Goal: at most 1.5x the bare pluggy import. And a fresh interpreter that creates a
dicomweb source (nothing opened), against importing what it needs: at most 1.2x
``import pluggy, requests, orjson, attrs`` (issue 15).

    python bench/bench_host_start.py [--extensions 50] [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST_CODE = (
    "from datasources import Host; h = Host({'dataSources': []}); "
    "n = len(h.namespaces); assert n >= {n}, n; assert not h.load_errors, h.load_errors"
)
PEER_CODE = "import pluggy"
SOURCE_CODE = (
    "from datasources import Host; h = Host.from_config({'dataSources': [{'namespace': "
    "'default.dataSourcesModule.dicomweb', 'sourceName': 'o', 'configuration': "
    "{'wadoRoot': 'http://127.0.0.1:9/dicom-web', 'qidoRoot': 'http://127.0.0.1:9/dicom-web'}}]}); "
    "h.get_data_source('o')"
)
SOURCE_PEER_CODE = "import pluggy, requests, orjson, attrs"


def make_extensions(root: Path, count: int) -> None:
    for i in range(count):
        name = f"dummyext{i:03d}"
        dist = root / f"{name}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(f"[datasources.extensions]\n{name} = {name}\n")
        (root / f"{name}.py").write_text(
            "from datasources import hookimpl\n\n"
            "@hookimpl\n"
            "def getDataSourcesModule():\n"
            f"    return [{{'name': 'src', 'type': 'other', 'createDataSource': '{name}_impl:create'}}]\n"
        )


def time_command(code: str, env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extensions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()
    started = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_extensions(root, args.extensions)
        # every case may write and use bytecode: with PYTHONDONTWRITEBYTECODE set (as the project's
        # shells set it) a case whose modules were never compiled would be timed compiling them
        plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env = dict(plain, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
        host_code = HOST_CODE.replace("{n}", str(args.extensions))
        # warm up both (bytecode caches, page cache)
        time_command(host_code, env, 2)
        time_command(PEER_CODE, env, 2)
        time_command(SOURCE_CODE, plain, 2)
        time_command(SOURCE_PEER_CODE, plain, 2)
        host, peer, source, source_peer = [], [], [], []
        for _ in range(args.runs):  # interleave so drift hits both alike
            host += time_command(host_code, env, 1)
            peer += time_command(PEER_CODE, env, 1)
            source += time_command(SOURCE_CODE, plain, 1)
            source_peer += time_command(SOURCE_PEER_CODE, plain, 1)
    h, p = statistics.median(host), statistics.median(peer)
    s, sp = statistics.median(source), statistics.median(source_peer)
    lines = [
        f"host start with {args.extensions} extensions: median {h * 1000:.1f} ms (min {min(host) * 1000:.1f})",
        f"python -c 'import pluggy': median {p * 1000:.1f} ms (min {min(peer) * 1000:.1f})",
        f"ratio host/pluggy: {h / p:.2f}x (goal <= 1.5x: {'met' if h / p <= 1.5 else 'MISSED'})",
        f"host start with a dicomweb source created: median {s * 1000:.1f} ms (min {min(source) * 1000:.1f})",
        f"python -c '{SOURCE_PEER_CODE}': median {sp * 1000:.1f} ms (min {min(source_peer) * 1000:.1f})",
        f"ratio source/imports: {s / sp:.2f}x (goal <= 1.2x: {'met' if s / sp <= 1.2 else 'MISSED'})",
    ]
    load = os.getloadavg()
    lines.append(
        f"load average (1, 5, 15 min): {started[0]:.2f}, {started[1]:.2f}, {started[2]:.2f} at the start, "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} at the end"
    )
    print("\n".join(lines))
    if args.record:
        import datetime

        with Path(__file__).with_name("RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(f"\n## Host start, {datetime.date.today().isoformat()}\n\n")
            out.write(
                f"`python bench/bench_host_start.py --runs {args.runs} --record`\n\n"
                + "".join(f"- {line}\n" for line in lines)
            )


if __name__ == "__main__":
    main()
