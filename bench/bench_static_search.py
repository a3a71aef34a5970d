#!/usr/bin/env python3
"""Static WADO: searching a 100k-study list over HTTP, against GET + gunzip + parse of that list.

The list (the same rows as bench_static_filter.py) is served gzipped, with an ETag, by a real
HTTP server on 127.0.0.1 (tests/support/statictree.py, as nginx or S3 serve a static tree).
In one run, interleaved:

- ``floor``: ``requests`` GET (gzip ``Content-Encoding``) + ``orjson.loads``, the GC paused;
- ``first``: a fresh dicomweb source (``staticWado``) searching ``PatientName=LEE*``:
  fetch, inflate, parse, filter, naturalize the matches;
- ``second``: the same source searching again (``PatientName=*ANNA*``): a conditional GET
  answered 304, the parsed list reused.

Goals (issue 15): first <= 1.2x the floor, second <= 0.2x the first.

    python bench/bench_static_search.py [--studies 100000] [--runs 5] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_static_filter import make_studies  # noqa: E402
from datasources.naturalize import paused_gc  # noqa: E402
from datasources.query import parse_search  # noqa: E402
from datasources_default.dicomweb.source import DicomWebSource  # noqa: E402
from support.statictree import serve_static_tree  # noqa: E402

GOALS = {"first": 1.2, "second": 0.2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "studies").mkdir()
        body = orjson.dumps(make_studies(args.studies))
        (root / "studies" / "index.json.gz").write_bytes(gzip.compress(body, 6))
        with serve_static_tree(root, validators=True) as url:
            session = requests.Session()
            config = {"wadoRoot": url, "qidoRoot": url, "staticWado": True, "supportsFuzzyMatching": True}
            first_q = parse_search("study", {"PatientName": "LEE*"})
            second_q = parse_search("study", {"PatientName": "*ANNA*"})
            source = DicomWebSource(config)

            def floor() -> object:
                with paused_gc():
                    return orjson.loads(session.get(f"{url}/studies").content)

            def first() -> object:
                nonlocal source
                source = DicomWebSource(config)  # nothing kept: every run fetches and parses
                return source.search(first_q)

            def second() -> object:
                return source.search(second_q)  # right after first(), on the same source

            methods = {"floor": floor, "first": first, "second": second}
            for method in methods.values():  # warm up: connections, imports, page cache
                method()
            times: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.runs):
                for name, method in methods.items():  # interleaved: drift hits every method alike
                    start = time.perf_counter()
                    method()
                    times[name].append(time.perf_counter() - start)
            matches = (len(first()), len(second()))
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    r1, r2 = med["first"] / med["floor"], med["second"] / med["first"]
    lines = [
        f"{args.studies} studies, {len(body) / 1e6:.1f} MB of JSON served gzipped with an ETag; "
        f"matches {matches[0]} (`LEE*`), {matches[1]} (`*ANNA*`)",
        "",
        "| method | median ms | min ms |",
        "| --- | --- | --- |",
        *(f"| {name} | {med[name]:.1f} | {min(t) * 1000:.1f} |" for name, t in times.items()),
        "",
        f"- first search / floor: {r1:.2f}x (goal <= {GOALS['first']}x: {'met' if r1 <= GOALS['first'] else 'MISSED'})",
        f"- second search / first: {r2:.3f}x (goal <= {GOALS['second']}x: "
        f"{'met' if r2 <= GOALS['second'] else 'MISSED'})",
    ]
    print("\n".join(lines))
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(f"\n## Static-WADO search over HTTP, {dt.date.today().isoformat()}\n\n")
            command = f"`python bench/bench_static_search.py --runs {args.runs} --record`"
            out.write(f"{command}\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
