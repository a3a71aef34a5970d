#!/usr/bin/env python3
"""Throughput of ``datasources serve`` with 1 and with 2 worker processes, under the same mixed load.

One real Orthanc on 127.0.0.1 holds a study of 1 series x 100 instances (64x64) and 200
single-instance studies. For each worker count a real ``datasources serve --workers N``
(dicomweb source on that Orthanc, access log off) takes 8 client threads (keep-alive
sessions) walking the worklist search, the study's series search, the series and study
metadata and the first frame of each instance, for ``--seconds`` each (60 by default,
as issue 16 asks). Errors must be 0; the goal is 2 workers >= 1.6x the throughput of 1 on
2 cores. Orthanc, the gateway and the client threads share the machine.

Every run prints the CPU each request cost the gateway, Orthanc, Redis and the load generator,
and how many cores they kept busy: where the sum fills the machine, no number of workers can
answer more. ``--mix even`` sends QIDO, metadata and frames requests in equal numbers;
``--cache redis`` runs both worker counts with a shared Redis cache (QIDO answers cached too).

    python bench/bench_workers.py [--seconds 60] [--mix viewer|even] [--cache memory|redis] [--record]
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from serve_process import serve_process  # noqa: E402
from support.dicomgen import StudySpec, dataset_to_bytes, iter_study  # noqa: E402
from support.loadgen import mixed_urls, run_load  # noqa: E402
from support.orthanc import OrthancServer  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402
from wrkload import wrk_load  # noqa: E402

GOAL = 1.6


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its live children (the gateway's workers)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def _sample(gateway_pid: int, orthanc_pid: int, redis_pid: int | None) -> tuple[float, ...]:
    """CPU seconds so far of the gateway, Orthanc, Redis (0 without) and this process (the load)."""
    redis_cpu = cpu_seconds(redis_pid) if redis_pid else 0.0
    return cpu_seconds(gateway_pid), cpu_seconds(orthanc_pid), redis_cpu, time.process_time()


def even_mix(urls: list[tuple[str, str, dict[str, str]]]) -> list[tuple[str, str, dict[str, str]]]:
    """The same URLs reordered so that QIDO, metadata and frames requests come in equal numbers, in turn."""
    kinds = {kind: [u for u in urls if u[0] == kind] for kind in ("qido", "metadata", "frames")}
    longest = max(len(group) for group in kinds.values())
    return [group[i % len(group)] for i in range(longest) for group in kinds.values()]


@contextmanager
def gateway(config: Path, workers: int, *extra: str) -> Iterator[tuple[str, int]]:
    """``datasources serve --workers N``; yields its default DICOMweb root and the supervisor's pid."""
    with serve_process(config, *extra, workers=workers) as (base, process):
        yield f"{base}/dicom-web", process.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    parser.add_argument(
        "--mix", choices=("viewer", "even"), default="viewer",
        help="viewer: each thread walks the study as a viewer does (mostly frames); even: QIDO, metadata and frames "
        "requests in equal numbers",
    )  # fmt: skip
    parser.add_argument(
        "--client", choices=("python", "wrk"), default="python",
        help="python: the suite's load generator (threads of requests sessions); wrk: the same walk from wrk",
    )  # fmt: skip
    parser.add_argument(
        "--cache", choices=("memory", "redis"), default="memory",
        help="redis: both runs share a redis-server on loopback (--cache redis://...), QIDO answers cached too",
    )  # fmt: skip
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    spec = StudySpec("loadA", n_series=1, n_instances=100, rows=64, cols=64)
    singles = [StudySpec(f"load1-{i}", patient_id=f"L{i:04d}", n_instances=1, rows=8, cols=8) for i in range(200)]
    results = {}
    cpu: dict[int, list[float]] = {}  # workers -> CPU ms per request: gateway, Orthanc, Redis, load generator
    redis = RedisServer().start() if args.cache == "redis" else None
    if redis is not None:
        atexit.register(redis.stop)
    extra = ("--cache", redis.url) if redis is not None else ()
    with OrthancServer() as server, tempfile.TemporaryDirectory() as tmp:
        datasets = [ds for s in (spec, *singles) for ds in iter_study(s)]
        server.upload([dataset_to_bytes(ds) for ds in datasets], workers=2)
        study = datasets[0]  # of the 100-instance study
        sops = [ds.SOPInstanceUID for ds in datasets if ds.StudyInstanceUID == study.StudyInstanceUID]
        config = Path(tmp) / "gateway.json"
        root = server.dicomweb_url
        entry = {"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "orthanc",
                 "configuration": {"qidoRoot": root, "wadoRoot": root}}  # fmt: skip
        config.write_text(json.dumps({"dataSources": [entry]}), encoding="utf-8")
        orthanc_pid = server.pid
        for workers in (1, 2):
            if redis is not None:  # each run starts cold, as the in-memory cache does
                with socket.create_connection(("127.0.0.1", redis.port)) as conn:
                    conn.sendall(b"FLUSHALL\r\n")
                    assert conn.recv(16).startswith(b"+OK")
            with gateway(config, workers, *extra) as (base, pid):
                urls = mixed_urls(base, study.StudyInstanceUID, study.SeriesInstanceUID, sops)
                if args.mix == "even":
                    urls = even_mix(urls)
                run_load(urls, args.threads, 3)  # warm up: connections, the metadata in each worker
                redis_pid = redis.process.pid if redis is not None and redis.process is not None else None
                before = _sample(pid, orthanc_pid, redis_pid)
                if args.client == "wrk":
                    results[workers], client_cpu = wrk_load(urls, args.threads, args.seconds)
                else:
                    results[workers] = run_load(urls, args.threads, args.seconds)
                after = _sample(pid, orthanc_pid, redis_pid)
                if args.client == "wrk":  # this process only waited: wrk's own CPU is the load generator's
                    after = (*after[:3], before[3] + client_cpu)
            r = results[workers]
            cpu[workers] = [(b - a) * 1000 / max(1, r.requests) for a, b in zip(before, after, strict=True)]
            summary = f"{r.requests} requests, {r.failed} errors, {r.throughput:.1f}/s"
            print(f"{workers} worker(s): {summary}", file=sys.stderr)
    one, two = results[1], results[2]
    ratio = two.throughput / one.throughput
    lines = [
        f"## Gateway workers under load, {dt.date.today().isoformat()}",
        "",
        f"`python bench/bench_workers.py --seconds {args.seconds:g} --mix {args.mix} --cache {args.cache} "
        f"--client {args.client} --record`: "
        f"{args.threads} threads x "
        f"{args.seconds:g} s of mixed QIDO / metadata / frames (keep-alive) through `datasources serve --workers N` "
        f"in front of one Orthanc on loopback; Orthanc, the gateway and the client share {os.cpu_count()} cores "
        f"(`--mix {args.mix}`, `--cache {args.cache}`, `--client {args.client}`; "
        f"1-minute load average {load_before:.1f} before the runs, {os.getloadavg()[0]:.1f} after: the runs' own "
        "processes count in it).",
        "",
        "| workers | requests | errors | requests/s | qido | metadata | frames | CPU ms/request: gateway | Orthanc "
        "| Redis | load generator |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workers, r in results.items():
        kinds = " | ".join(str(r.by_kind.get(k, 0)) for k in ("qido", "metadata", "frames"))
        shares = " | ".join(f"{ms:.2f}" for ms in cpu[workers])
        lines.append(f"| {workers} | {r.requests} | {r.failed} | {r.throughput:.1f} | {kinds} | {shares} |")
    verdict = "met" if ratio >= GOAL and one.failed == two.failed == 0 else "MISSED"
    cores = os.cpu_count() or 1
    used = {w: sum(cpu[w]) * results[w].throughput / 1000 for w in results}  # cores busy with this run
    lines += [
        "",
        f"- 2 workers / 1 worker: {ratio:.2f}x throughput (goal >= {GOAL}x, 0 errors: {verdict})",
        f"- cores kept busy by the gateway, its backends and the load generator together: {used[1]:.2f} of {cores} "
        f"with 1 worker, {used[2]:.2f} with 2 (a request costs the machine the sum of its CPU figures: "
        "where that sum fills the cores, more workers cannot answer more)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
