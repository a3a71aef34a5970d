#!/usr/bin/env python3
"""Static-WADO client-side filtering of 100,000 studies, against parsing the same list.

A static DICOMweb server answers every study query with the whole list; the client filters
it with the shared QIDO rules (``datasources.matching``). Goal: each query's filtering takes at
most 0.2x the time of ``orjson.loads`` of the list it filters (measured in the same run), and
so does fuzzy PatientName matching (``supportsFuzzyMatching``: every query word begins some
word of the name) over the same list (issue 15).

    python bench/bench_static_filter.py [--studies 100000] [--runs 5] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import orjson
from datasources.matching import filter_records
from datasources.naturalize import paused_gc
from datasources.query import parse_search

FAMILY = ["LEE", "GARCIA", "MULLER", "OKAFOR", "SMITH", "NGUYEN", "KOWALSKI", "TANAKA", "SILVA", "JOHNSON"]
GIVEN = ["ANNA", "JOSE", "KLAUS", "NGOZI", "JOHN", "MAI", "PIOTR", "YUKI", "ANA", "MARY"]
DESCRIPTIONS = ["CT CHEST W/O CONTRAST", "MR BRAIN W/WO CONTRAST", "CT ABDOMEN PELVIS", "US ABDOMEN", "XR CHEST 2V"]
MODALITIES = [["CT"], ["MR"], ["CT", "SR"], ["US"], ["CR"], ["MR", "SR"]]

QUERIES: list[dict[str, Any]] = [
    {"PatientName": "LEE*"},
    {"PatientName": "*ANNA*"},
    {"PatientID": "PAT0012345"},
    {"StudyDate": "20200101-20201231"},
    {"StudyDate": "20230601-", "ModalitiesInStudy": "MR"},
    {"ModalitiesInStudy": "CT\\MR"},
    {"StudyDescription": "ct chest*"},
    {"AccessionNumber": "ACC0099*"},
    {"StudyInstanceUID": "2.25.1000\\2.25.99999"},
    {"PatientName": "GARCIA*", "StudyDate": "-20191231", "limit": 25},
]
# fuzzy matching, as the static source runs it when the configuration sets supportsFuzzyMatching
FUZZY_QUERIES: list[dict[str, Any]] = [
    {"PatientName": "lee"},
    {"PatientName": "anna*"},
    {"PatientName": "^smith"},
    {"PatientName": "lee ann"},
    {"PatientName": "j?hn"},
]


def element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def make_studies(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = dt.date(2015, 1, 1)
    rows = []
    for i in range(n):
        date = (start + dt.timedelta(days=rng.randrange(3650))).strftime("%Y%m%d")
        rows.append(
            {
                "00080020": element("DA", date),
                "00080030": element("TM", f"{rng.randrange(24):02d}{rng.randrange(60):02d}00"),
                "00080050": element("SH", f"ACC{i:07d}"),
                "00080061": element("CS", *rng.choice(MODALITIES)),
                "00080090": element("PN", {"Alphabetic": f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}"}),
                "00081030": element("LO", rng.choice(DESCRIPTIONS)),
                "00100010": element(
                    "PN", {"Alphabetic": f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}^{chr(65 + i % 26)}"}
                ),
                "00100020": element("LO", f"PAT{rng.randrange(10**7):07d}"),
                "00100030": element("DA", f"19{rng.randrange(30, 99)}0101"),
                "00100040": element("CS", rng.choice("MF")),
                "0020000D": element("UI", f"2.25.{i}"),
                "00200010": element("SH", str(i)),
                "00201206": element("IS", rng.randrange(1, 9)),
                "00201208": element("IS", rng.randrange(1, 900)),
            }
        )
    return rows


def timed(fn: Any) -> float:
    """Wall time of one call with the cyclic GC paused, as the static client parses: with it
    on, parsing 100,000 studies is several times slower and the ratio would flatter us."""
    with paused_gc():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def paired(filter_fn: Any, parse_fn: Any, runs: int) -> tuple[float, float]:
    """Medians of ``runs`` filter and parse runs taken in turn, so load that comes and goes on
    a shared machine weighs on both sides of each ratio alike."""
    filters, parses = [], []
    for _ in range(runs):
        parses.append(timed(parse_fn))
        filters.append(timed(filter_fn))
    return statistics.median(filters), statistics.median(parses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()
    started = os.getloadavg()

    body = orjson.dumps(make_studies(args.studies))
    studies = orjson.loads(body)
    rows = []
    parse_medians = []
    worst = {False: 0.0, True: 0.0}
    for fuzzy, queries in ((False, QUERIES), (True, FUZZY_QUERIES)):
        for filters in queries:
            q = parse_search("study", filters)
            found = filter_records(studies, q, fuzzy=fuzzy, format="dicom_json")
            took, parse = paired(
                lambda q=q, f=fuzzy: filter_records(studies, q, fuzzy=f, format="dicom_json"),
                lambda: orjson.loads(body),
                args.runs,
            )
            parse_medians.append(parse)
            ratio = took / parse
            worst[fuzzy] = max(worst[fuzzy], ratio)
            shown = f"`{filters}`" + (" fuzzy" if fuzzy else "")
            verdict = "met" if ratio <= 0.2 else "MISSED"
            timing = f"{took * 1000:.1f} | {parse * 1000:.1f} | {ratio:.3f}x"
            rows.append(f"| {shown} | {len(found)} | {timing} | <= 0.2x: {verdict} |")
    parse_all = statistics.median(parse_medians)
    lines = [
        f"parse {len(body) / 1e6:.1f} MB, {args.studies} studies (orjson.loads): median {parse_all * 1000:.1f} ms",
        "(each query's ratio is to the parses timed in turn with its own runs)",
        "",
        "| query | matches | filter median ms | parse median ms | ratio to parse | goal |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
    ]
    lines += [
        "",
        f"worst ratio, plain queries: {worst[False]:.3f}x (goal <= 0.2x)",
        f"worst ratio, fuzzy PatientName: {worst[True]:.3f}x (goal <= 0.2x)",
    ]
    load = os.getloadavg()
    lines.append(
        f"load average (1, 5, 15 min): {started[0]:.2f}, {started[1]:.2f}, {started[2]:.2f} at the start, "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} at the end"
    )
    print("\n".join(lines))
    if args.record:
        results = Path(__file__).with_name("RESULTS.md")
        with results.open("a", encoding="utf-8") as out:
            out.write(f"\n## Static-WADO filtering, {dt.date.today().isoformat()}\n\n")
            out.write(f"`python bench/bench_static_filter.py --runs {args.runs} --record`\n\n")
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
