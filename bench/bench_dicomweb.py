#!/usr/bin/env python3
"""Study metadata and QIDO through the dicomweb source, against dicomweb-client and the floor.

One real Orthanc (started here on 127.0.0.1, as the tests start it), studies A = 1 series x
1000 instances, B = 10 series x 200 instances, C = 1 series x 5000 instances, D = 1 series x 100
instances, plus 1000 single-instance studies for QIDO. In one run, interleaved:

- ``datasources``: ``retrieve.series.metadata`` = fetch + naturalize + add to the metadata store;
- ``dicomweb-client``: ``retrieve_study_metadata`` (fetch + ``json`` parse, nothing more);
- ``floor``: one ``requests`` GET of the study's metadata URL plus ``orjson.loads``.

Goals (issue 15): datasources at most 1.15x the floor for A, B and C; the per-instance cost
flat from D (100) to C (5000), at most 1.2x between them; peak RSS of loading C in a fresh
process at most dicomweb-client's, and the memory returned once the raw JSON is dropped.
QIDO: a search over all studies against ``search_for_studies`` (no goal, for reference).

    python bench/bench_dicomweb.py [--runs 5] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

sys.path.insert(0, str(HERE))

from datasources import Host  # noqa: E402
from orthanc_data import STUDY_A, STUDY_B, STUDY_C, STUDY_D, bench_orthanc  # noqa: E402

RSS_CODE = """
import gc, os, resource, sys
url, uid, who = sys.argv[1:4]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
base = rss()
if who == "datasources":
    from datasources import Host
    host = Host.from_config({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb",
        "sourceName": "o", "configuration": {"wadoRoot": url, "qidoRoot": url}}]})
    host.get_data_source("o").retrieve.series.metadata(uid)
    kept = host.metadata_store
else:
    from dicomweb_client import DICOMwebClient
    kept = DICOMwebClient(url).retrieve_study_metadata(uid)
gc.collect()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{peak:.1f} {rss():.1f} {base:.1f}")
"""


def rss_of(url: str, uid: str, who: str) -> tuple[float, float, float]:
    """(peak MB, MB held after the load with the result kept, MB before) of a fresh process."""
    out = subprocess.run([sys.executable, "-c", RSS_CODE, url, uid, who], check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(HERE.parent / "tests")))  # fmt: skip
    peak, held, base = (float(v) for v in out.stdout.split())
    return peak, held, base


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
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()

    from dicomweb_client import DICOMwebClient

    study_a, study_b, study_c, study_d = STUDY_A, STUDY_B, STUDY_C, STUDY_D
    lines: list[str] = []
    with bench_orthanc() as server:
        url = server.dicomweb_url
        host = Host.from_config(
            {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "orthanc",
                              "configuration": {"wadoRoot": url, "qidoRoot": url}}]}
        )  # fmt: skip
        source = host.get_data_source("orthanc")
        client = DICOMwebClient(url)
        session = requests.Session()

        per_instance: dict[str, float] = {}
        for label, spec in (
            ("A: 1 series x 1000 instances", study_a),
            ("B: 10 series x 200 instances", study_b),
            ("C: 1 series x 5000 instances", study_c),
            ("D: 1 series x 100 instances", study_d),
        ):
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
            per_instance[label[0]] = medians["datasources"] / (spec.n_series * spec.n_instances)
            ratio = medians["datasources"] / medians["floor"]
            lines += [
                f"### Study {label}",
                "",
                "| method | median ms | min ms |",
                "| --- | --- | --- |",
                *(f"| {name} | {medians[name]:.1f} | {min(t) * 1000:.1f} |" for name, t in times.items()),
                "",
                f"- datasources / dicomweb-client: {medians['datasources'] / medians['dicomweb-client']:.2f}x",
                f"- datasources / floor: {ratio:.2f}x"
                + ("" if label[0] == "D" else f" (goal <= 1.15x: {'met' if ratio <= 1.15 else 'MISSED'})"),
                "",
            ]
        flat = per_instance["C"] / per_instance["D"]
        lines += [
            f"- per instance: {per_instance['D']:.3f} ms at 100 instances, {per_instance['C']:.3f} ms at 5000: "
            f"{flat:.2f}x (goal <= 1.2x: {'met' if flat <= 1.2 else 'MISSED'})",
            "",
        ]
        ours_rss = rss_of(url, study_c.study_uid, "datasources")
        theirs_rss = rss_of(url, study_c.study_uid, "dicomweb-client")
        ratio = ours_rss[0] / theirs_rss[0]
        lines += [
            "### Memory: study C (5000 instances) in a fresh process",
            "",
            "| method | peak RSS MB | RSS held after, result kept, MB | RSS before MB |",
            "| --- | --- | --- | --- |",
            f"| datasources (naturalized, in the store) | {ours_rss[0]:.0f} | {ours_rss[1]:.0f} | {ours_rss[2]:.0f} |",
            f"| dicomweb-client (raw JSON) | {theirs_rss[0]:.0f} | {theirs_rss[1]:.0f} | {theirs_rss[2]:.0f} |",
            "",
            f"- peak RSS datasources / dicomweb-client: {ratio:.2f}x "
            f"(goal <= 1.0x: {'met' if ratio <= 1.0 else 'MISSED'})",
            f"- RSS returned after the load (peak - held): datasources {ours_rss[0] - ours_rss[1]:.0f} MB of "
            f"{ours_rss[0] - ours_rss[2]:.0f} MB grown",
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
            out.write(f"`python bench/bench_dicomweb.py --runs {args.runs} --record`, one Orthanc on loopback, "
                      "2 cores shared by server and client.\n\n" + "\n".join(lines))  # fmt: skip


if __name__ == "__main__":
    main()
