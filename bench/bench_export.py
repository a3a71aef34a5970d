#!/usr/bin/env python3
"""Export to a static DICOMweb tree against just reading the same study from the same source.

A dicomlocal folder holds a 1000-instance study and a 5000-instance study (one series each,
128x128 16-bit frames, made by the tests' generator). Each measurement is a fresh process on
the already-built index:

- ``read``: the peer, the least an export must do: the series' metadata into the store and
  every frame read through ``retrieve.frames``, on the same number of threads;
- ``export``: ``export_static_wado`` of that study into an empty folder (metadata, frames,
  thumbnail, indexes, each file written under a temporary name and moved into place).

Goals (issue 13): export time of the 1000-instance study at most 1.5x its read; peak memory
(the process' maximum RSS) of the 5000-instance export at most 2x the 1000-instance one.

    python bench/bench_export.py [--runs 3] [--workers 4] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

GOALS = {"time": 1.5, "memory": 2.0}


def host_for(root: str) -> Any:
    from datasources import Host

    return Host.from_config({"dataSources": [{"namespace": "default.dataSourcesModule.dicomlocal",
                             "sourceName": "local", "configuration": {"root": root}}]})  # fmt: skip


def child(kind: str, root: str, study: str, dest: str, workers: int) -> None:
    host = host_for(root)
    ds = host.get_data_source("local")
    ds.query.studies.search({"StudyInstanceUID": study})  # the index is opened (and checked) before timing
    started = time.perf_counter()
    if kind == "export":
        from datasources.export import export_static_wado

        report = export_static_wado(host, dest, studies=[study], workers=workers)
        assert report.ok, report.to_dict()
    else:
        for row in ds.query.series.search(study):
            se = row["SeriesInstanceUID"]
            ds.retrieve.series.metadata(study, series_instance_uids=[se])
            instances = host.metadata_store.get_series(study, se)["instances"]
            with ThreadPoolExecutor(workers) as pool:
                for frames in pool.map(lambda i, se=se: ds.retrieve.frames(study, se, i["SOPInstanceUID"], [1]),
                                       instances):  # fmt: skip
                    assert frames[0]
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}))


def run_child(kind: str, root: Path, study: str, workers: int) -> dict[str, float]:
    dest = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(root), study, str(dest), str(workers)],
            capture_output=True, text=True, check=True, timeout=1800,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def make_data(root: Path) -> dict[int, str]:
    from support.dicomgen import StudySpec, iter_study, write_datasets

    uids = {}
    for count in (1000, 5000):
        spec = StudySpec(f"bench-export-{count}", f"BENCH^{count}", patient_id=f"B{count}", n_instances=count,
                         rows=128, cols=128, private=False)  # fmt: skip
        write_datasets(iter_study(spec), root / str(count))
        uids[count] = spec.study_uid
    started = time.perf_counter()
    assert len(host_for(str(root)).get_data_source("local").query.studies.search()) == 2  # builds the index
    print(f"indexed 6000 files in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return uids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, root, study, dest, workers = args.child
        child(kind, root, study, dest, int(workers))
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-export-data-"))
    try:
        uids = make_data(root)
        times: dict[str, list[float]] = {"read": [], "export": []}
        peaks: dict[int, list[float]] = {1000: [], 5000: []}
        for _ in range(args.runs):  # interleaved: the machine's load hits both alike
            for kind in ("read", "export"):
                result = run_child(kind, root, uids[1000], args.workers)
                times[kind].append(result["seconds"])
                if kind == "export":
                    peaks[1000].append(result["peak_mb"])
        big = run_child("export", root, uids[5000], args.workers)
        peaks[5000].append(big["peak_mb"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    read, export = statistics.median(times["read"]), statistics.median(times["export"])
    small, large = max(peaks[1000]), max(peaks[5000])
    lines = [
        f"- read metadata + frames, 1000 instances: median {read * 1000:.0f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in times['read'])})",
        f"- export, 1000 instances: median {export * 1000:.0f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in times['export'])})",
        f"- ratio export/read: {export / read:.2f}x (goal <= {GOALS['time']}x)",
        f"- peak RSS, export of 1000 instances: {small:.0f} MB; of 5000 instances: {large:.0f} MB "
        f"(export {big['seconds']:.1f} s)",
        f"- ratio 5000/1000: {large / small:.2f}x (goal <= {GOALS['memory']}x)",
    ]
    print("\n".join(lines))
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(
                f"\n## Export to a static tree, {dt.date.today().isoformat()}\n\n"
                f"`python bench/bench_export.py --runs {args.runs} --workers {args.workers} --record`: a dicomlocal "
                "folder, one series of 128x128 16-bit instances; each figure a fresh process on the built index.\n\n"
                + "\n".join(lines)
                + "\n"
            )
    ok = export / read <= GOALS["time"] and large / small <= GOALS["memory"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
