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


def local_config(root: Path) -> Path:
    path = root / "local.json"
    path.write_text(json.dumps({"dataSources": [{"namespace": "default.dataSourcesModule.dicomlocal",
                    "sourceName": "src", "configuration": {"root": str(root / "data")}}]}))  # fmt: skip
    return path


def orthanc_config(root: Path, url: str) -> Path:
    path = root / "orthanc.json"
    path.write_text(json.dumps({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb",
                    "sourceName": "src", "configuration": {"qidoRoot": url, "wadoRoot": url}}]}))  # fmt: skip
    return path


def child(kind: str, config: str, study: str, dest: str, workers: int) -> None:
    from datasources import Host

    host = Host.from_config(config)
    ds = host.get_data_source("src")
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


def run_child(kind: str, config: Path, study: str, workers: int) -> dict[str, float]:
    dest = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(config), study, str(dest), str(workers)],
            capture_output=True, text=True, check=True, timeout=1800,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def spec_for(count: int) -> Any:
    from support.dicomgen import StudySpec

    return StudySpec(f"bench-export-{count}", f"BENCH^{count}", patient_id=f"B{count}", n_instances=count,
                     rows=128, cols=128, private=False)  # fmt: skip


def make_data(root: Path) -> dict[int, str]:
    from datasources import Host
    from support.dicomgen import iter_study, write_datasets

    uids = {}
    for count in (1000, 5000):
        write_datasets(iter_study(spec_for(count)), root / "data" / str(count))
        uids[count] = spec_for(count).study_uid
    started = time.perf_counter()
    assert len(Host.from_config(local_config(root)).get_data_source("src").query.studies.search()) == 2  # the index
    print(f"indexed 6000 files in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return uids


def time_ratio(config: Path, study: str, runs: int, workers: int) -> tuple[list[float], list[float], list[float]]:
    """Read and export times (interleaved runs), and the exports' peak RSS."""
    read, export, peaks = [], [], []
    for _ in range(runs):  # interleaved: the machine's load hits both alike
        read.append(run_child("read", config, study, workers)["seconds"])
        result = run_child("export", config, study, workers)
        export.append(result["seconds"])
        peaks.append(result["peak_mb"])
    return read, export, peaks


def orthanc_times(root: Path, runs: int, workers: int) -> tuple[list[float], list[float]]:
    from orthanc_data import load
    from support.orthanc import OrthancServer

    with OrthancServer() as server:
        load(server, [spec_for(1000)])
        read, export, _ = time_ratio(orthanc_config(root, server.dicomweb_url), spec_for(1000).study_uid, runs, workers)
    return read, export


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    parser.add_argument("--no-orthanc", action="store_true", help="skip the Orthanc (dicomweb source) measurement")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, root, study, dest, workers = args.child
        child(kind, root, study, dest, int(workers))
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-export-data-"))
    try:
        uids = make_data(root)
        config = local_config(root)
        read_times, export_times, small_peaks = time_ratio(config, uids[1000], args.runs, args.workers)
        big = run_child("export", config, uids[5000], args.workers)
        orthanc = None if args.no_orthanc else orthanc_times(root, args.runs, args.workers)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def line(label: str, times: list[float]) -> str:
        runs = ", ".join(f"{t * 1000:.0f}" for t in times)
        return f"- {label}: median {statistics.median(times) * 1000:.0f} ms (runs: {runs})"

    read, export = statistics.median(read_times), statistics.median(export_times)
    small, large = max(small_peaks), big["peak_mb"]
    ratios = [export / read]
    lines = [
        "dicomlocal folder:",
        "",
        line("read metadata + frames, 1000 instances", read_times),
        line("export, 1000 instances", export_times),
        f"- ratio export/read: {export / read:.2f}x (goal <= {GOALS['time']}x)",
        f"- peak RSS, export of 1000 instances: {small:.0f} MB; of 5000 instances: {large:.0f} MB "
        f"(export {big['seconds']:.1f} s)",
        f"- ratio 5000/1000: {large / small:.2f}x (goal <= {GOALS['memory']}x)",
    ]
    if orthanc is not None:
        o_read, o_export = (statistics.median(t) for t in orthanc)
        ratios.append(o_export / o_read)
        lines += [
            "",
            "Orthanc on loopback through the dicomweb source (the same 1000-instance study):",
            "",
            line("read metadata + frames", orthanc[0]),
            line("export", orthanc[1]),
            f"- ratio export/read: {o_export / o_read:.2f}x (goal <= {GOALS['time']}x)",
        ]
    print("\n".join(lines))
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(
                f"\n## Export to a static tree, {dt.date.today().isoformat()}\n\n"
                f"`python bench/bench_export.py --runs {args.runs} --workers {args.workers} --record`: a dicomlocal "
                "folder and an Orthanc, one series of 128x128 16-bit instances; each figure a fresh process "
                "(the index built beforehand), on 2 cores shared with other work.\n\n" + "\n".join(lines) + "\n"
            )
    ok = max(ratios) <= GOALS["time"] and large / small <= GOALS["memory"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
