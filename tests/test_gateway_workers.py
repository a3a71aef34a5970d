"""``datasources serve`` as a service: several workers on one port, the Redis cache, a killed worker, shutdown, load.

Real processes against a real Orthanc and a real redis-server on loopback. The workers are
told apart by the ``pid`` of their JSON access-log lines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from datasources.cli.serve import _listen
from support.faultserver import Reply
from support.loadgen import mixed_urls, run_load
from support.redis_server import RedisServer


class Serving:
    def __init__(self, process: subprocess.Popen[bytes], err: Path, url: str) -> None:
        self.process, self.err, self.url = process, err, url

    def access(self, fragment: str = "") -> list[dict[str, Any]]:
        """The JSON access-log lines so far whose path holds ``fragment``."""
        lines = []
        for line in self.err.read_text().splitlines():
            if line.startswith("{") and '"datasources.gateway.access"' in line:
                entry = json.loads(line)
                if fragment in entry["path"]:
                    lines.append(entry)
        return lines

    def wait_access(self, fragment: str, count: int) -> list[dict[str, Any]]:
        """The access lines for ``fragment`` once there are ``count`` (a line is written just after its answer)."""
        deadline = time.monotonic() + 10
        while len(lines := self.access(fragment)) < count:
            assert time.monotonic() < deadline, f"{len(lines)} access lines for {fragment!r}, not {count}"
            time.sleep(0.02)
        return lines

    def workers(self) -> list[int]:
        """The pids of the worker processes (children of the serve process, the resource tracker aside)."""
        found = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:  # gone meanwhile
                    continue
                if b"resource_tracker" not in cmdline and state != "Z":  # a killed worker not yet reaped is not one
                    found.append(int(pid))
        return found


@contextmanager
def serve(tmp_path: Path, *args: str, workers: int = 1) -> Iterator[Serving]:
    exe = shutil.which("datasources")
    assert exe, "the datasources script is not installed"
    out, err = tmp_path / f"serve{os.getpid()}.out", tmp_path / "serve.err"
    command = [exe, "serve", "--port", "0", "--log-format", "json", "--workers", str(workers), *args]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while not out.read_text().endswith("\n"):
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        url = out.read_text().split()[3]
        running = Serving(process, err, url)
        while True:  # every worker up: each says it started its application
            started = err.read_text().count("Application startup complete")
            if started >= workers:
                break
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _config(tmp_path: Path, dicomweb_url: str) -> Path:
    config = tmp_path / "app.json"
    entry = {
        "namespace": "default.dataSourcesModule.dicomweb",
        "sourceName": "pacs",
        "configuration": {"qidoRoot": dicomweb_url, "wadoRoot": dicomweb_url, "retries": 0},
    }
    config.write_text(json.dumps({"dataSources": [entry]}), encoding="utf-8")
    return config


def _fresh_get(url: str, **kw: Any) -> requests.Response:
    """One request on its own connection, so the kernel may hand it to either worker."""
    return requests.get(url, headers={"Connection": "close", **kw.pop("headers", {})}, timeout=30, **kw)


def test_two_workers_share_the_redis_cache_and_survive_redis_stopping(tmp_path: Path, orthanc_dataset: Any) -> None:
    study = orthanc_dataset.study_uids[0]
    with (
        RedisServer() as redis,
        serve(
            tmp_path, "-c", str(_config(tmp_path, orthanc_dataset.dicomweb_url)), "--cache", redis.url, workers=2
        ) as gw,
    ):
        url = f"{gw.url}/dicom-web/studies/{study}/metadata"
        first = _fresh_get(url)
        assert first.status_code == 200
        (made,) = gw.wait_access("/metadata", 1)
        assert made["cache"] == "miss"
        deadline = time.monotonic() + 60
        asked = 1
        while not any(e["pid"] != made["pid"] for e in gw.wait_access("/metadata", asked)):  # until the other answers
            assert time.monotonic() < deadline, "the second worker never answered"
            assert _fresh_get(url).content == first.content
            asked += 1
        other = [e for e in gw.access("/metadata") if e["pid"] != made["pid"]]
        assert other[0]["cache"] == "redis"  # made by one worker, a hit on the other: nothing loaded there
        assert all(e["status"] == 200 for e in gw.access("/metadata"))
        metrics = _fresh_get(f"{gw.url}/metrics").text  # whichever worker answers, it counts both
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("datasources_gateway_requests_total{") and "/{study}/metadata" in line
        )
        assert counted == len(gw.access("/metadata")) == asked

        # Redis stops mid-run: answers go on, from the source, without an error
        results: list[int] = []

        def keep_asking() -> None:
            stop = time.monotonic() + 3
            while time.monotonic() < stop:
                results.append(_fresh_get(url).status_code)
                results.append(_fresh_get(f"{gw.url}/dicom-web/studies?limit=5").status_code)

        asker = threading.Thread(target=keep_asking)
        asker.start()
        time.sleep(0.8)
        redis.stop()
        asker.join()
        assert len(results) > 10 and set(results) == {200}, results
        stderr = gw.err.read_text()
        assert "the Redis cache" in stderr and "serving without it" in stderr
        assert {e["cache"] for e in gw.access("/metadata")[-5:]} <= {"memory", "miss"}  # Redis out of the way


def test_killing_a_worker_loses_no_request_that_was_not_in_flight_on_it(tmp_path: Path) -> None:
    with serve(tmp_path, workers=2) as gw:
        pids = gw.workers()
        assert len(pids) == 2, pids
        outcomes: list[tuple[float, float, bool]] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                start = time.monotonic()
                try:
                    ok = _fresh_get(f"{gw.url}/dicom-web/studies").status_code == 200
                except requests.RequestException:
                    ok = False
                outcomes.append((start, time.monotonic(), ok))

        def wait_for(count: int, since: float) -> None:  # the machine may be slow: count answers, not seconds
            deadline = time.monotonic() + 60
            while sum(1 for s, _, ok in outcomes if ok and s > since) < count:
                assert time.monotonic() < deadline, outcomes[-5:]
                time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            wait_for(5, 0.0)
            killed_at = time.monotonic()
            os.kill(pids[0], signal.SIGKILL)
            wait_for(10, killed_at + 0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        lost = [(s, e) for s, e, ok in outcomes if not ok]
        assert all(s <= killed_at <= e for s, e in lost), (lost, killed_at)  # only requests in flight at the kill
        assert len(lost) <= 2
        after = [ok for s, _, ok in outcomes if s > killed_at + 0.05]
        assert len(after) >= 10 and all(after)
        deadline = time.monotonic() + 60
        while len(now := gw.workers()) < 2 or pids[0] in now:  # the supervisor starts a new worker
            assert time.monotonic() < deadline, "no worker replaced the killed one"
            time.sleep(0.1)


def test_shutdown_lets_requests_in_flight_finish_then_closes_the_sources(tmp_path: Path, fault_server: Any) -> None:
    fault_server.script("/dicom-web/studies", Reply.json([], delay=2.0))
    with serve(tmp_path, "-c", str(_config(tmp_path, f"{fault_server.url}/dicom-web"))) as gw:
        answers: list[requests.Response] = []
        slow = threading.Thread(target=lambda: answers.append(_fresh_get(f"{gw.url}/dicom-web/studies")))
        slow.start()
        deadline = time.monotonic() + 10
        while not fault_server.requests_to("/dicom-web/studies"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        gw.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:  # a new request during the drain: refused, or answered 503
            late = _fresh_get(f"{gw.url}/healthz").status_code
        except requests.ConnectionError:
            late = None
        assert late in (None, 503)
        slow.join(20)
        assert answers and answers[0].status_code == 200 and answers[0].json() == []  # in flight: it finished
        gw.process.wait(20)
        stderr = gw.err.read_text()
        assert "gateway: sources closed (pacs)" in stderr
        assert gw.process.returncode in (0, -signal.SIGTERM)


def test_load_through_one_and_two_workers_has_no_errors(tmp_path: Path, orthanc_dataset: Any) -> None:
    study = orthanc_dataset.study_uids[0]
    datasets = orthanc_dataset.datasets_of(study)
    series = datasets[0].SeriesInstanceUID
    sops = [ds.SOPInstanceUID for ds in datasets if ds.SeriesInstanceUID == series]
    config = _config(tmp_path, orthanc_dataset.dicomweb_url)
    for workers in (1, 2):
        with serve(tmp_path, "-c", str(config), workers=workers) as gw:
            result = run_load(mixed_urls(f"{gw.url}/dicom-web", study, series, sops), threads=8, seconds=3)
        assert result.failed == 0, result.errors
        assert result.requests >= 8 and set(result.by_kind) == {"qido", "metadata", "frames"}


@pytest.mark.exclusive
def test_the_listening_socket_is_tcp_with_nodelay_so_keep_alive_answers_do_not_wait(tmp_path: Path) -> None:
    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        accepted.close()
        client.close()
    finally:
        sock.close()
    with serve(tmp_path) as gw, requests.Session() as session:
        times = []
        for _ in range(25):
            start = time.perf_counter()
            assert session.get(f"{gw.url}/api/sources", timeout=10).status_code == 200
            times.append(time.perf_counter() - start)
    # with Nagle on, every answer after the first waited for the client's delayed ACK: ~40 ms
    assert statistics.median(times[1:]) < 0.03, times


def test_the_dicomweb_sources_pooled_connections_have_nodelay_too(orthanc: Any) -> None:
    from datasources import Host

    root = orthanc.dicomweb_url
    host = Host.from_config({
        "dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
                         "configuration": {"qidoRoot": root, "wadoRoot": root}}]
    })  # fmt: skip
    source = host.get_data_source("pacs")
    assert isinstance(source.query.studies.search({"limit": 1}), list)
    session = source.helpers.session()
    pools = session.get_adapter(root).poolmanager.pools
    queued = [conn for key in pools.keys() for conn in list(pools[key].pool.queue)]  # noqa: SIM118 (no __iter__)
    kept = [conn for conn in queued if conn is not None and conn.sock is not None]
    assert kept, "the request's connection went back to the pool"  # Orthanc keeps connections alive
    assert all(conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1 for conn in kept)
