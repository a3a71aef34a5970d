#!/usr/bin/env python3
"""QIDO and study metadata through the gateway, against the same calls to Orthanc directly.

One real Orthanc on 127.0.0.1 (as the tests start it; bench/orthanc_data.py) holds study A (1
series x 1000 instances), study B (10 series x 200 instances) and 1000 single-instance studies
among others. Two gateways
run as real ``datasources serve`` processes with a dicomweb source on that Orthanc:

- ``cold`` (``--metadata-ttl 0``): every metadata request goes to Orthanc (QIDO for the series,
  WADO-RS metadata per series), answered from Orthanc's JSON with its BulkDataURIs rewritten,
  the store filled after the answer has left;
- ``warm`` (the default TTL): metadata served from the store once fetched.

The client is the same for every call (a ``requests`` session, gzip on, ``orjson.loads``), and
the calls are interleaved run by run. Orthanc, the gateways and the client share the machine.
Frames: frames/1 of 100 instances of study A, one request each on a kept-alive connection, as a
viewer asks (``multipart/related; type="application/octet-stream"; transfer-syntax=*``), timed
as a whole and per request (p50).

Goals (issue 15): cold study metadata at most 1.2x Orthanc, warm at most 0.3x, QIDO at most
1.1x; the 100 frames at most 1.2x and the single-frame p50 at most 1.2x.

    python bench/bench_gateway.py [--runs 7] [--record] [--only qido,metadata,frames]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

sys.path.insert(0, str(HERE))

from orthanc_data import SINGLES, STUDY_A, STUDY_B, bench_orthanc  # noqa: E402
from serve_process import serve_process  # noqa: E402
from support.dicomgen import StudySpec  # noqa: E402

GOALS = {"gateway": 1.1, "cold": 1.2, "warm": 0.3}  # gateway: QIDO through the gateway
FRAME_GOALS = {"gateway": 1.2}
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@contextmanager
def gateway(config: Path, *extra: str) -> Iterator[str]:
    """A ``datasources serve`` process; yields its DICOMweb root for the source ``orthanc``."""
    with serve_process(config, *extra) as (base, _):
        yield f"{base}/orthanc/dicom-web"


def run(methods: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    for method in methods.values():  # warm up: connections, imports, the warm gateway's store
        method()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(runs):
        for name, method in methods.items():  # interleaved: drift hits every method alike
            start = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - start)
    return times


def table(title: str, times: dict[str, list[float]], baseline: str, goals: dict[str, float]) -> list[str]:
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    lines = [
        f"### {title}",
        "",
        "| method | median ms | min ms |",
        "| --- | --- | --- |",
        *(f"| {name} | {medians[name]:.1f} | {min(t) * 1000:.1f} |" for name, t in times.items()),
        "",
    ]
    for name in times:
        if name != baseline:
            ratio = medians[name] / medians[baseline]
            goal = goals.get(name)
            verdict = f" (goal <= {goal}x: {'met' if ratio <= goal else 'MISSED'})" if goal else ""
            lines.append(f"- {name} / {baseline}: {ratio:.2f}x{verdict}")
    return [*lines, ""]


def frames(session: requests.Session, orthanc: str, gateway_root: str, spec: StudySpec, runs: int) -> list[str]:
    """frames/1 of 100 instances, one GET each, directly and through the (cold) gateway."""
    rows = session.get(f"{orthanc}/studies/{spec.study_uid}/instances", headers={"Accept": "application/dicom+json"})
    paths = [
        f"studies/{spec.study_uid}/series/{r['0020000E']['Value'][0]}/instances/{r['00080018']['Value'][0]}/frames/1"
        for r in rows.json()[:100]
    ]
    latencies: dict[str, list[float]] = {"orthanc": [], "gateway": []}

    def fetch_all(root: str, name: str) -> None:
        for path in paths:
            start = time.perf_counter()
            response = session.get(f"{root}/{path}", headers={"Accept": FRAME_ACCEPT})
            response.raise_for_status()
            assert len(response.content) > spec.rows * spec.cols, response.headers
            latencies[name].append(time.perf_counter() - start)

    direct = session.get(f"{orthanc}/{paths[0]}", headers={"Accept": FRAME_ACCEPT}).content
    through = session.get(f"{gateway_root}/{paths[0]}", headers={"Accept": FRAME_ACCEPT}).content
    assert abs(len(direct) - len(through)) < 1024, "the gateway and Orthanc disagree on a frame"
    methods = {"orthanc": lambda: fetch_all(orthanc, "orthanc"), "gateway": lambda: fetch_all(gateway_root, "gateway")}
    times = run(methods, runs)
    lines = table(f"Frames: frames/1 of {len(paths)} instances, one request each, keep-alive", times, "orthanc",
                  FRAME_GOALS)  # fmt: skip
    p50 = {name: statistics.median(values) * 1000 for name, values in latencies.items()}
    ratio = p50["gateway"] / p50["orthanc"]
    verdict = "met" if ratio <= FRAME_GOALS["gateway"] else "MISSED"
    lines[-1:-1] = [
        f"- single frame p50: orthanc {p50['orthanc']:.2f} ms, gateway {p50['gateway']:.2f} ms: {ratio:.2f}x "
        f"(goal <= {FRAME_GOALS['gateway']}x: {verdict})"
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    parser.add_argument(
        "--only", default="qido,metadata,frames", help="comma-separated parts to run: qido, metadata, frames (all)"
    )
    args = parser.parse_args()
    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    if not parts or parts - {"qido", "metadata", "frames"}:
        raise SystemExit(f"--only takes qido, metadata and frames, not {args.only!r}")

    study_a, study_b = STUDY_A, STUDY_B
    lines: list[str] = []
    with bench_orthanc() as server, tempfile.TemporaryDirectory() as tmp:
        orthanc = server.dicomweb_url
        config = Path(tmp) / "gateway.json"
        config.write_text(
            json.dumps(
                {
                    "dataSources": [
                        {
                            "namespace": "default.dataSourcesModule.dicomweb",
                            "sourceName": "orthanc",
                            "configuration": {"qidoRoot": orthanc, "wadoRoot": orthanc},
                        }
                    ]
                }
            )
        )
        session = requests.Session()

        def get(url: str) -> object:
            response = session.get(url, headers={"Accept": "application/dicom+json"})
            response.raise_for_status()
            return orjson.loads(response.content)

        with gateway(config, "--metadata-ttl", "0") as cold, gateway(config, "--metadata-ttl", "3600") as warm:
            searches = (
                (f"QIDO: all {len(SINGLES) + 4} studies", "studies"),
                ("QIDO: PatientID=P001*", "studies?PatientID=P001*"),
            )
            for label, query in searches if "qido" in parts else ():
                count = len(get(f"{orthanc}/{query}"))  # type: ignore[arg-type]
                assert count == len(get(f"{cold}/{query}")), "the gateway and Orthanc disagree"  # type: ignore[arg-type]
                times = run(
                    {"orthanc": lambda q=query: get(f"{orthanc}/{q}"), "gateway": lambda q=query: get(f"{cold}/{q}")},
                    args.runs,
                )
                lines += table(f"{label}, {count} rows", times, "orthanc", GOALS)
            studies = (("A: 1 series x 1000 instances", study_a), ("B: 10 series x 200 instances", study_b))
            for label, spec in studies if "metadata" in parts else ():
                path = f"studies/{spec.study_uid}/metadata"
                count = len(get(f"{orthanc}/{path}"))  # type: ignore[arg-type]
                assert count == len(get(f"{cold}/{path}")) == len(get(f"{warm}/{path}"))  # type: ignore[arg-type]
                times = run(
                    {
                        "orthanc": lambda p=path: get(f"{orthanc}/{p}"),
                        "cold": lambda p=path: get(f"{cold}/{p}"),
                        "warm": lambda p=path: get(f"{warm}/{p}"),
                    },
                    args.runs,
                )
                lines += table(f"Study metadata {label}", times, "orthanc", GOALS)
            if "frames" in parts:
                lines += frames(session, orthanc, cold, study_a, args.runs)
    print("\n".join(lines))
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(f"\n## Gateway, {dt.date.today().isoformat()}\n\n")
            out.write(
                f"`python bench/bench_gateway.py --runs {args.runs} --record`: the same GETs (requests, gzip, "
                "orjson) to one Orthanc directly and through `datasources serve` (dicomweb source on that "
                "Orthanc; `cold` = `--metadata-ttl 0`, every request fetched from Orthanc; `warm` = served from "
                f"the store). Orthanc, two gateways and the client share {os.cpu_count()} cores.\n\n" + "\n".join(lines)
            )


if __name__ == "__main__":
    main()
