"""The gateway against hostile requests, in process: STOW multipart bombs (linear time, off the
event loop, bounded), read-only sources refusing before parsing, exact public paths whatever a
source is named, the Host check, and error bodies without server-side paths."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("starlette")

from datasources import Host
from datasources import multipart as mp
from datasources.errors import PayloadTooLargeError
from datasources.gateway import create_app
from datasources.gateway.app import dicomweb_table

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from support.dicomgen import StudySpec, dataset_to_bytes, make_study
from test_gateway_support import served

TOKEN = "hardening-T0ken-5e1"
RESERVED = ["browser", "api", "dicom-web", "static", "favicon.ico", "index.html", "studies", "metadata", "health"]


def writable(tmp_path: Path) -> Host:
    (tmp_path / "store").mkdir(exist_ok=True)
    return Host({"dataSources": [
        {"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "local",
         "configuration": {"root": str(tmp_path / "store"), "cache": str(tmp_path / "index.sqlite")}},
        {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "sample",
         "configuration": {"bundled": "sample"}},
    ], "defaultDataSourceName": "local"})  # fmt: skip


def bomb(n: int, content: bytes = b"x" * 64) -> tuple[bytes, dict[str, str]]:
    body, boundary = mp.build([(content, "application/dicom")] * n)
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


# -- multipart --------------------------------------------------------------------------------


@pytest.mark.exclusive
def test_parse_is_linear_in_the_number_of_parts() -> None:
    def seconds(n: int) -> float:
        body, headers = bomb(n)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            parts = mp.parse(body, headers["Content-Type"])
            best = min(best, time.perf_counter() - started)
        assert len(parts) == n and parts[-1].content == b"x" * 64
        return best

    small, large = seconds(4000), seconds(8000)
    assert large / small < 3.0, (small, large)  # quadratic parsing gives about 4


def test_parse_bounds_parts_and_headers() -> None:
    body, headers = bomb(11)
    with pytest.raises(PayloadTooLargeError, match="more than 10 parts"):
        mp.parse(body, headers["Content-Type"], max_parts=10)
    assert len(mp.parse(body, headers["Content-Type"], max_parts=11)) == 11
    boundary = headers["Content-Type"].rsplit("=", 1)[1]
    huge = f"--{boundary}\r\nX-Pad: {'a' * 20000}\r\n\r\nx\r\n--{boundary}--\r\n".encode()
    with pytest.raises(PayloadTooLargeError, match="headers"):
        mp.parse(huge, headers["Content-Type"])


@pytest.mark.exclusive
def test_stow_bomb_is_linear_and_a_concurrent_search_answers(tmp_path: Path) -> None:
    app = create_app(writable(tmp_path), stow_spool_bytes=64 << 10)  # the bombs go through a temporary file
    with served(app) as server:
        search = f"{server.url}/sample/dicom-web/studies?limit=1"
        unloaded = min(_timed(lambda: requests.get(search, timeout=10)) for _ in range(5))

        def stow(n: int) -> float:
            body, headers = bomb(n)
            started = time.perf_counter()
            answer = requests.post(f"{server.url}/local/dicom-web/studies", data=body, headers=headers, timeout=120)
            assert answer.status_code == 409, answer.text  # every part refused: not DICOM
            assert len(answer.json()["00081198"]["Value"]) == n
            return time.perf_counter() - started

        small, large = stow(3000), stow(6000)
        assert large / small < 3.0, (small, large)
        latencies = _while_running(lambda: stow(6000), lambda: requests.get(search, timeout=30).status_code == 200)
        assert max(latencies) < max(50 * unloaded, 0.25), (unloaded, latencies)


def test_stow_bounds_and_read_only_refusal(tmp_path: Path) -> None:
    client = TestClient(create_app(writable(tmp_path), max_stow_parts=100, stow_spool_bytes=0))
    body, headers = bomb(101)
    over = client.post("/local/dicom-web/studies", content=body, headers=headers)
    assert over.status_code == 413 and over.json()["type"] == "PayloadTooLargeError"
    (ds,) = make_study(StudySpec("gw-harden-spool", n_instances=1))
    body, boundary = mp.build([(dataset_to_bytes(ds), "application/dicom")])
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    stored = client.post("/local/dicom-web/studies", content=body, headers=headers)  # spooled to disk: 0 bytes
    assert stored.status_code == 200, stored.text
    rows = client.get(f"/local/dicom-web/studies?StudyInstanceUID={ds.StudyInstanceUID}").json()
    assert len(rows) == 1
    garbage = b"\x00" * 1000  # not even multipart: a read-only source refuses before parsing
    refused = client.post("/sample/dicom-web/studies", content=garbage, headers=headers)
    assert refused.status_code == 405 and refused.json()["type"] == "NotSupportedError"
    assert refused.headers["allow"] == "GET, HEAD"


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _while_running(hostile: Any, probe: Any, *, least: int = 3) -> list[float]:
    """Latencies of ``probe`` while ``hostile`` runs in another thread (at least ``least`` probes)."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            hostile()
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.05)
    latencies: list[float] = []
    while not done.is_set() or len(latencies) < least:
        started = time.perf_counter()
        assert probe()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.02)
    thread.join(120)
    assert not failure, failure
    return latencies


# -- access -----------------------------------------------------------------------------------


def _filled(path: str) -> str:
    return (
        path.replace("{study}", "1.2.3").replace("{series}", "1.2.3.4").replace("{sop}", "1.2.3.4.5")
        .replace("{frames}", "1").replace("{path:path}", "7FE00010")
    )  # fmt: skip


def test_every_dicomweb_route_of_every_reserved_looking_source_needs_the_token() -> None:
    sources = [{"namespace": "default.dataSourcesModule.dicomjson", "sourceName": name,
                "configuration": {"bundled": "sample"}} for name in RESERVED]  # fmt: skip
    client = TestClient(create_app(Host({"dataSources": sources}), token=TOKEN))
    checked = 0
    for name in RESERVED:
        for path, _endpoint, methods in dicomweb_table():
            for method in methods:
                for prefix in (f"/{name}/dicom-web", "/dicom-web"):
                    answer = client.request(method, f"{prefix}{_filled(path)}")
                    assert answer.status_code == 401, (method, prefix, path, answer.status_code)
                    checked += 1
    assert checked == len(RESERVED) * 2 * sum(len(m) for _, _, m in dicomweb_table())
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/browser/dicom-web/studies", headers=authorized).status_code == 200
    for public in ("/", "/favicon.ico", "/browser/browser.js", "/browser/browser.css", "/browser/index.html"):
        assert client.get(public).status_code in (200, 204), public
    for private in ("/browser/", "/browser/x", "/browser/../api/sources", "/api/sources", "/browser/dicom-web"):
        assert client.get(private).status_code in (401, 404), private
    assert client.get("/api/sources").status_code == 401


def test_other_host_headers_get_400() -> None:
    client = TestClient(create_app(Host(), allowed_hosts=["127.0.0.1", "localhost", "pacs.example.org"]))
    for good in ("localhost", "LOCALHOST:8080", "127.0.0.1:9", "pacs.example.org", "localhost."):
        assert client.get("/dicom-web/studies", headers={"Host": good}).status_code == 200, good
    for bad in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "", "[::1]", "pacs.example.org.evil"):
        answer = client.get("/dicom-web/studies", headers={"Host": bad})
        assert answer.status_code == 400 and answer.json()["type"] == "BadHost", bad
        assert client.get("/", headers={"Host": bad}).status_code == 400
    assert (
        TestClient(create_app(Host(), allowed_hosts=["*"])).get("/", headers={"Host": "x.example"}).status_code == 200
    )


# -- error bodies -----------------------------------------------------------------------------


def test_error_bodies_name_the_source_not_server_paths(tmp_path: Path) -> None:
    client = TestClient(create_app(writable(tmp_path)))
    for url in ("/local/dicom-web/studies/1.2.3/metadata", "/dicom-web/studies/1.2.3/metadata"):
        answer = client.get(url)
        assert answer.status_code == 404, answer.text
        assert str(tmp_path) not in answer.text and "/tmp" not in answer.text
        assert "local" in answer.json()["error"]


def test_no_two_routes_match_one_path_so_their_order_is_free() -> None:
    """routes() puts a viewer's frequent requests first: that is only safe while every path, whatever
    its source name or UIDs (reserved words among them), matches exactly one route."""
    from datasources.gateway.app import routes
    from starlette.routing import Match, Route

    table = [r for r in routes() if isinstance(r, Route)]
    assert table[0].path.endswith("/frames/{frames}")  # the hottest route is tried first
    checked = 0
    for name in ["s", *RESERVED]:
        for path, _endpoint, methods in dicomweb_table():
            for prefix in (f"/{name}/dicom-web", "/dicom-web"):
                for filler in ("1.2.3", *RESERVED):
                    url = prefix + _filled(path).replace("1.2.3", filler)
                    scope = {"type": "http", "path": url, "method": methods[0], "root_path": ""}
                    matching = [r.path for r in table if r.matches(scope)[0] is Match.FULL]
                    assert len(matching) == 1, (url, matching)
                    checked += 1
    assert checked == (len(RESERVED) + 1) * len(dicomweb_table()) * 2 * (len(RESERVED) + 1)
