#!/usr/bin/env python3
"""What a viewer does, end to end, against the gateway and against Orthanc directly, in one run.

One real Orthanc on 127.0.0.1 holds study B (10 series x 200 instances) among 1004
studies (bench/orthanc_data.py); one ``datasources serve`` (a dicomweb source on it, ``--metadata-ttl 0``
so every open is a cold one) in front. A "viewer open" is, as OHIF issues it: the worklist
search (``studies?limit=101&offset=0&fuzzymatching=false&includefield=...``), the study's
series search, then each series' metadata and right after it that series' first frame, six
series at a time (a browser's connections per host), each worker on its own kept-alive
session. Measured per open: time to the first frame (the first frame of any series in hand)
and time to all first frames. Opens to the gateway and to Orthanc alternate.

Goal (issue 15): time to first frame through the gateway at most 1.1x Orthanc direct.

    python bench/bench_viewer.py [--runs 5] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_gateway import FRAME_ACCEPT, gateway  # noqa: E402
from orthanc_data import STUDY_B, bench_orthanc  # noqa: E402

GOAL = 1.1
JSON = {"Accept": "application/dicom+json"}
WORKLIST = "studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060"
CONCURRENCY = 6


class Viewer:
    """Kept-alive sessions, one per worker thread, as a browser's connection pool."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(CONCURRENCY)

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def get(self, url: str, accept: dict[str, str]) -> requests.Response:
        response = self.session().get(url, headers=accept)
        response.raise_for_status()
        return response

    def open(self, root: str, study_uid: str) -> tuple[float, float]:
        """(time to first frame, time to every series' first frame), seconds."""
        start = time.perf_counter()
        assert self.get(f"{root}/{WORKLIST}", JSON).json()
        series = self.get(f"{root}/studies/{study_uid}/series", JSON).json()
        firsts: list[float] = []

        def one(row: dict) -> None:
            se = row["0020000E"]["Value"][0]
            instances = self.get(f"{root}/studies/{study_uid}/series/{se}/metadata", JSON).json()
            sop = min(instances, key=lambda i: i.get("00200013", {}).get("Value", [0])[0])["00080018"]["Value"][0]
            frame = self.get(
                f"{root}/studies/{study_uid}/series/{se}/instances/{sop}/frames/1", {"Accept": FRAME_ACCEPT}
            )
            assert len(frame.content) > 64 * 64
            firsts.append(time.perf_counter() - start)

        list(self.pool.map(one, series))
        return min(firsts), max(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()
    study = STUDY_B
    with bench_orthanc() as server, tempfile.TemporaryDirectory() as tmp:
        orthanc = server.dicomweb_url
        config = Path(tmp) / "gateway.json"
        config.write_text(json.dumps({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb",
            "sourceName": "orthanc", "configuration": {"qidoRoot": orthanc, "wadoRoot": orthanc}}]}))  # fmt: skip
        with gateway(config, "--metadata-ttl", "0") as through:
            viewer = Viewer()
            roots = {"orthanc": orthanc, "gateway": through}
            for root in roots.values():  # warm up: connections, imports
                viewer.open(root, study.study_uid)
            first: dict[str, list[float]] = {name: [] for name in roots}
            every: dict[str, list[float]] = {name: [] for name in roots}
            for _ in range(args.runs):
                for name, root in roots.items():  # interleaved
                    a, b = viewer.open(root, study.study_uid)
                    first[name].append(a)
                    every[name].append(b)
    med = {name: statistics.median(v) * 1000 for name, v in first.items()}
    med_all = {name: statistics.median(v) * 1000 for name, v in every.items()}
    ratio = med["gateway"] / med["orthanc"]
    lines = [
        f"study B (10 series x 200 instances) among 1004 studies, {CONCURRENCY} series at a time, "
        f"{args.runs} opens each",
        "",
        "| target | time to first frame, median ms | time to all first frames, median ms |",
        "| --- | --- | --- |",
        *(f"| {name} | {med[name]:.0f} | {med_all[name]:.0f} |" for name in first),
        "",
        f"- time to first frame gateway / orthanc: {ratio:.2f}x "
        f"(goal <= {GOAL}x: {'met' if ratio <= GOAL else 'MISSED'})",
        f"- time to all first frames gateway / orthanc: {med_all['gateway'] / med_all['orthanc']:.2f}x",
    ]
    print("\n".join(lines))
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(f"\n## Viewer end to end, {dt.date.today().isoformat()}\n\n")
            out.write(f"`python bench/bench_viewer.py --runs {args.runs} --record`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
