#!/usr/bin/env python3
"""Study metadata and QIDO through the dicomweb source, against dicomweb-client and the floor.

One real Orthanc (started here on 127.0.0.1, as the tests start it), two studies: A = 1 series x
1000 instances, B = 10 series x 100 instances, plus 1000 single-instance studies for QIDO. In one
run, interleaved:

- ``datasources``: ``retrieve.series.metadata`` = fetch + naturalize + add to the metadata store;
- ``dicomweb-client``: ``retrieve_study_metadata`` (fetch + ``json`` parse, nothing more);
- ``floor``: one ``requests`` GET of the study's metadata URL plus ``orjson.loads``.

Goals: datasources at most 1.0x dicomweb-client and at most 1.3x the floor. QIDO: a search
over all studies, datasources (naturalized rows) against ``search_for_studies``.

    python bench/bench_dicomweb.py [--runs 7] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from datasources import Host  # noqa: E402
from support.dicomgen import StudySpec, dataset_to_bytes, iter_study  # noqa: E402
from support.orthanc import OrthancServer  # noqa: E402


def load(server: OrthancServer, specs: list[StudySpec]) -> None:
    batch: list[bytes] = []
    for spec in specs:
        for ds in iter_study(spec):
            batch.append(dataset_to_bytes(ds))
            if len(batch) >= 200:
                server.upload(batch, workers=2)
                batch = []
    if batch:
        server.upload(batch, workers=2)


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def run(methods: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    for method in methods.values():  # warm up: connections, caches, imports
        method()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(runs):
        for name, method in methods.items():  # interleaved: drift hits every method alike
            start = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--qido-studies", type=int, default=1000)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()

    from dicomweb_client import DICOMwebClient

    study_a = StudySpec("benchA", n_series=1, n_instances=1000, rows=64, cols=64)
    study_b = StudySpec("benchB", modality="MR", n_series=10, n_instances=100, rows=64, cols=64)
    singles = [
        StudySpec(
            f"bench1k-{i}", patient_name=f"PATIENT^{i:04d}", patient_id=f"P{i:05d}", n_instances=1, rows=8, cols=8
        )
        for i in range(args.qido_studies)
    ]
    lines: list[str] = []
    with OrthancServer() as server:
        start = time.perf_counter()
        load(server, [study_a, study_b, *singles])
        print(f"loaded {server.instance_count()} instances in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        url = server.dicomweb_url
        host = Host.from_config(
            {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "orthanc",
                              "configuration": {"wadoRoot": url, "qidoRoot": url}}]}
        )  # fmt: skip
        source = host.get_data_source("orthanc")
        client = DICOMwebClient(url)
        session = requests.Session()

        for label, spec in (("A: 1 series x 1000 instances", study_a), ("B: 10 series x 100 instances", study_b)):
            uid = spec.study_uid

            def ours(uid: str = uid) -> None:
                source.delete_study_metadata(uid)  # no cache: every run fetches
                host.metadata_store.remove_study(uid)
                source.retrieve.series.metadata(uid)

            def theirs(uid: str = uid) -> object:
                return client.retrieve_study_metadata(uid)

            def floor(uid: str = uid) -> object:
                return orjson.loads(session.get(f"{url}/studies/{uid}/metadata").content)

            times = run({"datasources": ours, "dicomweb-client": theirs, "floor": floor}, args.runs)
            medians = {name: median_ms(t) for name, t in times.items()}
            lines += [
                f"### Study {label}",
                "",
                "| method | median ms | min ms |",
                "| --- | --- | --- |",
                *(f"| {name} | {medians[name]:.1f} | {min(t) * 1000:.1f} |" for name, t in times.items()),
                "",
                f"- datasources / dicomweb-client: {medians['datasources'] / medians['dicomweb-client']:.2f}x "
                "(goal <= 1.0x)",
                f"- datasources / floor: {medians['datasources'] / medians['floor']:.2f}x (goal <= 1.3x)",
                "",
            ]

        def ours_qido() -> object:
            return source.query.studies.search()

        def theirs_qido() -> object:
            return client.search_for_studies()

        count = len(ours_qido())  # type: ignore[arg-type]
        times = run({"datasources": ours_qido, "dicomweb-client": theirs_qido}, args.runs)
        medians = {name: median_ms(t) for name, t in times.items()}
        lines += [
            f"### QIDO: all {count} studies",
            "",
            "| method | median ms | min ms |",
            "| --- | --- | --- |",
            *(f"| {name} | {medians[name]:.1f} | {min(t) * 1000:.1f} |" for name, t in times.items()),
            "",
            f"- datasources / dicomweb-client: {medians['datasources'] / medians['dicomweb-client']:.2f}x",
            "",
        ]
    print("\n".join(lines))
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(f"\n## dicomweb source vs dicomweb-client, {dt.date.today().isoformat()}\n\n")
            out.write(f"`python bench/bench_dicomweb.py --runs {args.runs} --record`, one Orthanc 1.10 on loopback, "
                      "2 cores shared by server and client.\n\n" + "\n".join(lines))  # fmt: skip


if __name__ == "__main__":
    main()
