"""docs/deploy.md, run as written: its configurations, each server command, and what the page says they answer.

The only changes made to the page's text: 8080, 8042 and 6379 become free ports of the
test's servers, and ``0.0.0.0`` becomes ``127.0.0.1`` (test traffic stays on loopback).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import tomllib
import yaml

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from datasources import Host
from support.ports import free_port
from support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/deploy.md"
TOKEN = "deploy-doc-token-5b1e"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def block(language: str, marker: str) -> str:
    found = [b for b in blocks(language) if marker in b]
    assert len(found) == 1, f"{len(found)} {language} blocks with {marker!r} in {DOC.name}"
    return found[0]


def localize(text: str, ports: dict[int, int]) -> str:
    for documented, real in ports.items():
        text = text.replace(f":{documented}", f":{real}").replace(f"--port {documented}", f"--port {real}")
    return text.replace("0.0.0.0", "127.0.0.1")


@contextmanager
def running(command: str, cwd: Path, port: int, env: dict[str, str] | None = None) -> Iterator[Path]:
    """A documented bash block, run until the ``with`` ends (then SIGTERM to its process group); yields its log."""
    log = cwd / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", f"set -e\n{command}"],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code in (200, 401):
                    break
            except requests.RequestException:  # not listening yet, or bound but no worker accepting yet
                pass
            assert process.poll() is None, f"the documented command exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"the documented command did not start: {log.read_text()}"
            time.sleep(0.1)
        yield log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        deadline = time.monotonic() + 30  # bash is gone; the server it started may still be shutting down
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.1)


def keep_alive_p50(url: str, headers: dict[str, str] | None = None) -> float:
    with requests.Session() as session:
        times = []
        for _ in range(16):
            start = time.perf_counter()
            assert session.get(url, headers=headers, timeout=10).status_code == 200
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


@pytest.fixture
def site(tmp_path: Path, orthanc_dataset: Any) -> tuple[Path, dict[int, int]]:
    """A folder with the page's app.yaml, pointed at the test's Orthanc; the port map."""
    ports = {8080: free_port(), 8042: orthanc_dataset.server.port}
    (tmp_path / "app.yaml").write_text(localize(block("yaml", "# app.yaml"), ports), encoding="utf-8")
    return tmp_path, ports


def test_the_configurations_are_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(block("yaml", "# cloud.yaml"), encoding="utf-8")
    monkeypatch.setenv("GCP_ACCESS_TOKEN", "ya29.not-a-real-token")
    host = Host.from_config(cloud)
    assert host.source_names == ["cloud"]
    assert "ya29" not in json.dumps(host.get_data_source("cloud").get_config(), default=str)
    assert json.loads(block("json", '"PostgreSQL"'))["PostgreSQL"]["EnableIndex"] is True
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"gateway", "redis"} <= set(extras)  # pip install 'datasources[gateway,redis]'
    line = json.loads(block("json", '"datasources.gateway.access"'))
    assert {"method", "path", "status", "bytes", "duration_ms", "source", "cache", "pid"} <= set(line)


@pytest.mark.exclusive
def test_one_machine_several_workers(site: tuple[Path, dict[int, int]], orthanc_dataset: Any) -> None:
    cwd, ports = site
    command = localize(block("bash", "--workers 4"), ports).replace("a long random string", TOKEN)
    port = ports[8080]
    with running(command, cwd, port):
        base = f"http://127.0.0.1:{port}"
        ready = requests.get(f"{base}/readyz", timeout=30)  # public with --public-health
        assert ready.status_code == 200 and ready.json()["sources"][0]["name"] == "orthanc"
        assert requests.get(f"{base}/dicom-web/studies", timeout=10).status_code == 401
        assert requests.get(f"{base}/metrics", timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        rows = requests.get(f"{base}/dicom-web/studies", headers=auth, timeout=30).json()
        assert {r["0020000D"]["Value"][0] for r in rows} == set(orthanc_dataset.study_uids)
        assert keep_alive_p50(f"{base}/healthz") < 0.03  # no 40 ms Nagle stall on kept-alive connections


@pytest.mark.exclusive
def test_gunicorn_with_uvicorn_workers_shares_metrics(site: tuple[Path, dict[int, int]]) -> None:
    cwd, ports = site
    port = ports[8080]
    with running(localize(block("bash", "gunicorn"), ports), cwd, port):
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/readyz", timeout=30).status_code == 200

        def healthz_count() -> float:
            text = requests.get(f"{base}/metrics", timeout=10).text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("datasources_gateway_requests_total{") and 'route="/healthz"' in line
            )

        before = healthz_count()
        pids = set()
        for _ in range(12):
            answer = requests.get(f"{base}/healthz", headers={"Connection": "close"}, timeout=10)
            pids.add(answer.json()["pid"])
        deadline = time.monotonic() + 5
        while (counted := healthz_count() - before) < 12 and time.monotonic() < deadline:
            time.sleep(0.1)  # a request is counted just after its answer left
        assert counted == 12, (counted, pids)  # every worker's requests, whichever answered the scrape
        assert keep_alive_p50(f"{base}/healthz") < 0.03  # gunicorn sets TCP_NODELAY


@pytest.mark.exclusive
def test_uvicorn_alone(site: tuple[Path, dict[int, int]]) -> None:
    cwd, ports = site
    port = ports[8080]
    with running(localize(block("bash", "uvicorn --factory"), ports), cwd, port) as log:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/dicom-web/studies?limit=1", timeout=30).status_code == 200
        assert keep_alive_p50(f"{base}/healthz") < 0.03
        time.sleep(0.2)
        assert "datasources.gateway.access" in log.read_text()


def test_several_machines_sharing_redis(site: tuple[Path, dict[int, int]], orthanc_dataset: Any) -> None:
    cwd, ports = site
    with RedisServer() as redis:
        ports[6379] = redis.port
        command = localize(block("bash", "--cache redis://"), ports).replace("the same on every machine", TOKEN)
        port = ports[8080]
        with running(command, cwd, port) as log:
            base = f"http://127.0.0.1:{port}"
            ready = requests.get(f"{base}/readyz", timeout=30).json()
            assert ready["cache"]["up"] is True
            auth = {"Authorization": f"Bearer {TOKEN}"}
            study = orthanc_dataset.study_uids[0]
            url = f"{base}/dicom-web/studies/{study}/metadata"
            first = requests.get(url, headers=auth, timeout=30)
            again = requests.get(url, headers=auth, timeout=30)
            assert first.status_code == 200 and again.content == first.content
            assert "https://dicomweb.example.org/dicom-web/studies/" in first.text  # --public-url in the URLs
            time.sleep(0.2)
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
            caches = [e["cache"] for e in lines if e.get("path", "").endswith("/metadata")]
            assert caches[:2] == ["miss", "redis"]
            assert TOKEN not in log.read_text()


def test_yaml_block_is_the_configuration_the_commands_use() -> None:
    config = yaml.safe_load(block("yaml", "# app.yaml"))
    assert config["dataSources"][0]["configuration"]["qidoRoot"] == "http://127.0.0.1:8042/dicom-web"
