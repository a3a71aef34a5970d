"""Hostile requests against a real ``datasources serve`` process: while each runs (again and
again, from another thread), a concurrent ``limit=1`` search must answer within a bound that is
a ratio of its unloaded time."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
import requests
from datasources import multipart as mp
from test_gateway_cli import serve
from test_gateway_hardening import _while_running

RATIO = 50  # the bound: this many times the unloaded search (floored at FLOOR on 2 shared cores)
FLOOR = 0.5
FREEZE = 5.0  # no single search may wait this long


def _bomb(n: int) -> tuple[bytes, dict[str, str]]:
    body, boundary = mp.build([(b"x" * 64, "application/dicom")] * n)
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


def _hostile(url: str) -> list[Any]:
    bomb, bomb_headers = _bomb(6000)
    over, over_headers = _bomb(12000)
    wildcard = "*?" * 40 + "a"
    return [
        pytest.param(
            "POST", "/local/dicom-web/studies", {"data": bomb, "headers": bomb_headers}, (409,), id="multipart-bomb"
        ),
        pytest.param(
            "POST", "/local/dicom-web/studies", {"data": over, "headers": over_headers}, (413,), id="too-many-parts"
        ),
        pytest.param(
            "POST", "/sample/dicom-web/studies", {"data": bomb, "headers": bomb_headers}, (405,), id="read-only-stow"
        ),
        pytest.param(
            "GET",
            "/sample/dicom-web/studies?limit=99999999999999999999999&offset=1e308",
            {},
            (200, 400),
            id="huge-paging",
        ),
        pytest.param("GET", "/sample/dicom-web/studies?offset=-1&limit=-5", {}, (200, 400), id="negative-paging"),
        pytest.param(
            "GET", "/sample/dicom-web/studies", {"headers": {"Host": "attacker.example"}}, (400,), id="bad-host"
        ),
        pytest.param(
            "GET",
            "/sample/dicom-web/studies",
            {"headers": {"Host": "127.0.0.1.attacker.example"}},
            (400,),
            id="rebinding-host",
        ),
        pytest.param("GET", f"/sample/dicom-web/studies?PatientName={'*' * 2000}", {}, (200, 400), id="star-run"),
        pytest.param("GET", "/browser/dicom-web/studies", {}, (401, 404), id="browser-prefix"),
        pytest.param(
            "GET", f"/sample/dicom-web/studies?StudyInstanceUID={wildcard}", {}, (200, 400), id="wildcard-bomb"
        ),
    ]


CASES = [p.id for p in _hostile("")]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "store").mkdir()
    config = tmp / "app.yaml"
    config.write_text(
        "dataSources:\n"
        "  - namespace: default.dataSourcesModule.dicomlocal\n"
        "    sourceName: local\n"
        f"    configuration: {{root: '{tmp / 'store'}', cache: '{tmp / 'index.sqlite'}'}}\n"
        "  - namespace: default.dataSourcesModule.dicomjson\n"
        "    sourceName: sample\n"
        "    configuration: {bundled: sample}\n"
        "defaultDataSourceName: sample\n"
    )
    with serve(tmp, "-c", str(config), "--log-level", "warning") as running:
        yield running


@pytest.mark.exclusive
@pytest.mark.parametrize("case", CASES)
def test_a_search_answers_while_a_hostile_request_runs(gateway: Any, case: str) -> None:
    url = gateway.url
    (param,) = [p for p in _hostile(url) if p.id == case]
    method, path, kwargs, statuses = param.values
    search = f"{url}/sample/dicom-web/studies?limit=1"
    unloaded = min(_timed(lambda: requests.get(search, timeout=10)) for _ in range(5))
    answers: list[int] = []

    def hostile() -> None:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            answers.append(requests.request(method, f"{url}{path}", timeout=60, **kwargs).status_code)

    latencies = _while_running(hostile, lambda: requests.get(search, timeout=60).status_code == 200)
    assert answers and set(answers) <= set(statuses), (case, answers)
    # typical latency within the ratio; no single search frozen (the bugs froze it for 20 s to minutes),
    # though one may meet a scheduling spike on 2 cores shared by the whole machine
    assert statistics.median(latencies) < max(RATIO * unloaded, FLOOR), (case, unloaded, latencies)
    assert max(latencies) < FREEZE, (case, unloaded, latencies)


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
