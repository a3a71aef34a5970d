"""Faults of the dimse source, each a typed error with nothing half-written.

PACS down, association rejected (Orthanc and dcmqrscp with a wrong called AE), a C-FIND that
never answers, a C-GET with failed sub-operations, the cache read-only or full, and
``maxAssociations`` under 8 concurrent callers — against real peers (Orthanc, dcmqrscp, and a
scripted pynetdicom SCP where only a scripted peer can produce the fault).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from datasources_default.dimse.errors import (
    AssociationRejectedError,
    CacheError,
    DimseTimeoutError,
    PeerUnreachableError,
    SubOperationsFailedError,
)
from support.dicomgen import StudySpec, make_study
from support.dimse_fixtures import *  # noqa: F403
from support.dimse_fixtures import dimse_host
from support.ports import free_port
from support.scripted_pacs import ScriptedPacs
from support.tlscert import self_signed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def scripted() -> Iterator[ScriptedPacs]:
    datasets = make_study(StudySpec("dimse-faults", n_instances=3, rows=128, cols=128))
    with ScriptedPacs(datasets) as pacs:
        yield pacs


def _uids(pacs: ScriptedPacs) -> tuple[str, str]:
    ds = pacs.datasets[0]
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def test_pacs_down_is_a_typed_error_naming_the_peer(tmp_path: Path) -> None:
    port = free_port()
    host = dimse_host({"host": "127.0.0.1", "port": port, "calledAETitle": "NOBODY", "callingAETitle": "ME",
                       "timeouts": {"connect": 2}, "cache": str(tmp_path)})  # fmt: skip
    start = time.monotonic()
    with pytest.raises(PeerUnreachableError) as caught:
        host.initialize_data_source("pacs")
    assert time.monotonic() - start < 10
    assert f"ME -> NOBODY@127.0.0.1:{port}" in str(caught.value) and isinstance(caught.value, ConnectionError)
    with pytest.raises(PeerUnreachableError):  # any use initializes first, and fails the same way
        host.active_data_source.helpers.health()


def test_health_follows_the_pacs(scripted: ScriptedPacs, tmp_path: Path) -> None:
    host = dimse_host(scripted.source_config(cache=str(tmp_path), timeouts={"connect": 2}))
    assert host.active_data_source.helpers.health()["ok"] is True
    scripted.stop()
    health = host.active_data_source.helpers.health()
    assert health["ok"] is False and f"SCRIPTED@127.0.0.1:{scripted.port}" in health["error"]


def test_wrong_called_ae_is_rejected_by_orthanc(orthanc_pacs: Any, tmp_path: Path) -> None:
    config = orthanc_pacs.server.source_config(calledAETitle="NOT-ORTHANC", cache=str(tmp_path))
    host = dimse_host(config)
    with pytest.raises(AssociationRejectedError, match=r"NOT-ORTHANC@127\.0\.0\.1") as caught:
        host.initialize_data_source("pacs")
    assert "called AE title not recognized" in str(caught.value)


class InstantRejecter:
    """A peer that reads each A-ASSOCIATE-RQ, answers A-ASSOCIATE-RJ at once and closes.

    As Orthanc does with a wrong called AE, but with nothing in between: pynetdicom's requestor
    thread then often finds the socket closed before it looks at it, and reports an abort.
    """

    def __init__(self, source: int = 1, reason: int = 7) -> None:
        import socket

        self.pdu = bytes([0x03, 0, 0, 0, 0, 4, 0, 0x01, source, reason])
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.answered = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                header = conn.recv(6)
                while len(header) < 6:
                    header += conn.recv(6 - len(header))
                left = int.from_bytes(header[2:6], "big")
                while left:
                    left -= len(conn.recv(min(left, 65536)))
                self.answered += 1  # counted before it is sent: the client may see it before this thread runs on
                conn.sendall(self.pdu)


def test_a_reject_that_closes_at_once_is_still_a_reject_with_its_reason(tmp_path: Path) -> None:
    peer = InstantRejecter(source=1, reason=7)
    try:
        config = {"host": "127.0.0.1", "port": peer.port, "calledAETitle": "FAST", "cache": str(tmp_path)}
        for attempt in range(40):
            host = dimse_host(config)
            with pytest.raises(AssociationRejectedError) as caught:
                host.initialize_data_source("pacs")
            assert str(caught.value).endswith("called AE title not recognized"), (attempt, str(caught.value))
        assert peer.answered == 40
        peer.pdu = bytes([0x03, 0, 0, 0, 0, 4, 0, 0x02, 3, 2])  # transient, provider: local limit exceeded
        with pytest.raises(AssociationRejectedError, match="local limit exceeded"):
            dimse_host(config).initialize_data_source("pacs")
    finally:
        peer.server.close()


def test_wrong_called_ae_is_rejected_by_dcmqrscp(dcmqrscp_pacs: Any, tmp_path: Path) -> None:
    host = dimse_host(dcmqrscp_pacs.server.source_config(calledAETitle="WRONG", cache=str(tmp_path)))
    with pytest.raises(AssociationRejectedError, match=r"DATASOURCES -> WRONG@127\.0\.0\.1"):
        host.active_data_source.query.studies.search()


@pytest.mark.exclusive
def test_cfind_that_never_answers_times_out_and_the_pool_recovers(scripted: ScriptedPacs, tmp_path: Path) -> None:
    host = dimse_host(scripted.source_config(timeouts={"dimse": 0.5}, cache=str(tmp_path)))
    ds = host.active_data_source
    scripted.find_delay = 5
    start = time.monotonic()
    with pytest.raises(DimseTimeoutError, match=r"C-FIND .* within 0\.5 s") as caught:
        ds.query.studies.search()
    assert time.monotonic() - start < 4 and isinstance(caught.value, TimeoutError)
    scripted.find_delay = 0
    assert [s["StudyInstanceUID"] for s in ds.query.studies.search()] == [_uids(scripted)[0]]


def test_cget_with_failed_suboperations_stores_nothing_half(scripted: ScriptedPacs, tmp_path: Path) -> None:
    host = dimse_host(scripted.source_config(cache=str(tmp_path)))
    study, series = _uids(scripted)
    bad = str(scripted.datasets[1].SOPInstanceUID)
    scripted.fail_sops = {bad}
    with pytest.raises(SubOperationsFailedError) as caught:
        host.active_data_source.retrieve.series.metadata(study)
    error = caught.value
    assert [f.sop_instance_uid for f in error.failed] == [bad], error.failed
    assert error.failed[0].status is not None and error.failed[0].status != 0
    assert sorted(error.stored) == sorted(str(d.SOPInstanceUID) for d in scripted.datasets if d.SOPInstanceUID != bad)
    assert host.metadata_store.get_study(study) is None  # nothing half-written in the store
    assert not (tmp_path / "series" / f"{series}.json").exists()
    cached = sorted(p.name for p in (tmp_path / "instances").rglob("*.dcm"))
    assert cached == sorted(f"{uid}.dcm" for uid in error.stored)  # what arrived is whole and kept
    scripted.fail_sops = set()
    host.active_data_source.retrieve.series.metadata(study)
    assert len(host.metadata_store.get_series(study, series)["instances"]) == 3


@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_cache_is_a_cache_error(scripted: ScriptedPacs, tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        host = dimse_host(scripted.source_config(cache=str(folder)))
        study, _ = _uids(scripted)
        with pytest.raises(CacheError, match="read-only"):
            host.active_data_source.retrieve.series.metadata(study)
        assert host.metadata_store.get_study(study) is None


def test_full_cache_is_a_cache_error_with_no_partial_file(scripted: ScriptedPacs, tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "full", "size=48k") as folder:
        host = dimse_host(scripted.source_config(cache=str(folder)))
        study, _ = _uids(scripted)
        with pytest.raises(CacheError, match="full"):
            host.active_data_source.retrieve.series.metadata(study)
        assert host.metadata_store.get_study(study) is None
        for path in folder.rglob("*.dcm"):  # whatever is there is whole
            assert pydicom.dcmread(path).SOPInstanceUID
        assert not [p for p in folder.rglob("*") if p.name.startswith(".tmp-")]


def test_instance_larger_than_max_bytes(scripted: ScriptedPacs, tmp_path: Path) -> None:
    host = dimse_host(scripted.source_config(cache={"folder": str(tmp_path), "maxBytes": 1000}))
    with pytest.raises(CacheError, match="larger than the cache's maxBytes"):
        host.active_data_source.retrieve.series.metadata(_uids(scripted)[0])


def test_max_associations_under_8_concurrent_callers(scripted: ScriptedPacs, tmp_path: Path) -> None:
    host = dimse_host(scripted.source_config(maxAssociations=2, cache=str(tmp_path)))
    ds = host.active_data_source
    scripted.find_delay = 0.05
    results: list[int] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            for _ in range(3):
                results.append(len(ds.query.studies.search()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and results == [1] * 24
    assert scripted.open_peak <= 2, "the peer saw more associations than maxAssociations"
    assert ds.helpers.pool_stats()["peak"] <= 2


def test_cache_is_reused_bounded_and_expires(scripted: ScriptedPacs, tmp_path: Path) -> None:
    study, series = _uids(scripted)
    first = dimse_host(scripted.source_config(cache=str(tmp_path)))
    first.active_data_source.retrieve.series.metadata(study)
    assert scripted.gets == 1
    second = dimse_host(scripted.source_config(cache=str(tmp_path)))  # another source, same folder
    second.active_data_source.retrieve.series.metadata(study)
    frame = second.active_data_source.retrieve.frames(study, series, str(scripted.datasets[0].SOPInstanceUID), [1])
    assert scripted.gets == 1 and bytes(frame[0]) == scripted.datasets[0].PixelData
    short = dimse_host(scripted.source_config(cache={"folder": str(tmp_path), "retentionMinutes": 0.002}))
    time.sleep(0.3)
    short.active_data_source.retrieve.series.metadata(study)
    assert scripted.gets == 2  # expired: retrieved again
    size = sum(p.stat().st_size for p in (tmp_path / "instances").rglob("*.dcm"))
    from datasources_default.dimse.cache import InstanceCache
    from datasources_default.dimse.config import CacheConfig

    cache = InstanceCache(CacheConfig(tmp_path, size // 2, 60))  # maxBytes under what is held
    cache.evict()
    assert size > 0 and cache.usage() <= size // 2
    assert cache.load_series(series) is None  # evicted whole: manifest first, then its files


def test_two_processes_share_one_cache(scripted: ScriptedPacs, tmp_path: Path) -> None:
    study, series = _uids(scripted)
    script = (
        "import sys, json\n"
        "from datasources_default.dimse.source import DimseSource\n"
        f"src = DimseSource({scripted.source_config(cache=str(tmp_path))!r})\n"
        "for _ in range(5):\n"
        f"    out = src.series_instances({study!r}, {series!r})\n"
        "print(json.dumps(sorted(i['SOPInstanceUID'] for i in out)))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    from datasources_default.dimse.source import DimseSource

    here = DimseSource(scripted.source_config(cache=str(tmp_path)))
    mine = [sorted(i["SOPInstanceUID"] for i in here.series_instances(study, series)) for _ in range(5)]
    out, err = other.communicate(timeout=60)
    assert other.returncode == 0, err.decode()[-2000:]
    import json

    assert json.loads(out) == mine[0] == sorted(str(d.SOPInstanceUID) for d in scripted.datasets)
    for path in (tmp_path / "instances").rglob("*"):
        if path.is_file():
            assert not path.name.startswith(".tmp-")
            assert pydicom.dcmread(path).SOPInstanceUID in mine[0]


def test_tls_to_the_pacs(tmp_path: Path) -> None:
    from datasources.errors import ConfigurationError

    cert, key, server_context = self_signed(tmp_path)
    datasets = make_study(StudySpec("dimse-tls", n_instances=1))
    with ScriptedPacs(datasets, ssl_context=server_context) as pacs:
        tls = {"ca": str(cert), "cert": str(cert), "key": str(key)}
        host = dimse_host(pacs.source_config(tls=tls, cache=str(tmp_path / "cache")))
        found = host.active_data_source.query.studies.search()
        assert [s["StudyInstanceUID"] for s in found] == [str(datasets[0].StudyInstanceUID)]
        assert host.active_data_source.get_config()["tls"] == tls  # paths only: no key material
        plain = dimse_host(pacs.source_config(cache=str(tmp_path / "cache2"), timeouts={"acse": 2}))
        with pytest.raises((AssociationRejectedError, PeerUnreachableError)):
            plain.active_data_source.query.studies.search()  # no TLS: the handshake never completes
        missing = dimse_host(pacs.source_config(tls={"ca": str(tmp_path / "nope.pem")}, cache=str(tmp_path)))
        with pytest.raises(ConfigurationError, match="tls files cannot be loaded"):
            missing.active_data_source.query.studies.search()


def test_datasources_sources_shows_the_pacs_healthy_or_not(scripted: ScriptedPacs, tmp_path: Path) -> None:
    """``datasources sources`` asks each source's ``health`` helper: a C-ECHO for the dimse source."""
    import json

    import yaml

    down = free_port()
    config = tmp_path / "app.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dataSources": [
                    {"namespace": "default.dataSourcesModule.dimse", "sourceName": "up",
                     "configuration": scripted.source_config(cache=str(tmp_path / "a"), timeouts={"connect": 2})},
                    {"namespace": "default.dataSourcesModule.dimse", "sourceName": "down",
                     "configuration": {"host": "127.0.0.1", "port": down, "calledAETitle": "NOBODY",
                                       "callingAETitle": "ME", "timeouts": {"connect": 2},
                                       "cache": str(tmp_path / "b")}},
                ],
                "defaultDataSourceName": "up",
            }
        )
    )  # fmt: skip
    run = subprocess.run(
        ["datasources", "sources", "-c", str(config), "--json"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    health = {row["sourceName"]: row["health"] for row in json.loads(run.stdout)}
    assert health["up"]["ok"] is True and health["up"]["latencyMs"] >= 0
    assert health["down"]["ok"] is False and f"ME -> NOBODY@127.0.0.1:{down}" in health["down"]["error"]
    wide = dict(os.environ, COLUMNS="250")
    table = subprocess.run(
        ["datasources", "sources", "-c", str(config)], capture_output=True, text=True, timeout=120, env=wide
    )
    assert table.returncode == 0 and "healthy (" in table.stdout and "unhealthy: " in table.stdout


def test_moves_starting_while_the_last_ones_scp_closes_find_it_listening(tmp_path: Path) -> None:
    """Moves ending and beginning at once (a study's series in parallel): a move that begins while
    the last one's storage SCP is closing waits for it, instead of failing to bind the port."""
    import socket
    from types import SimpleNamespace

    from datasources_default.dimse.config import DimseConfig
    from datasources_default.dimse.retrieve import Delivery, StorageSCP

    port = free_port()
    config = DimseConfig.from_mapping({"host": "127.0.0.1", "port": free_port(), "calledAETitle": "PACS",
                                       "retrieve": "cmove", "moveDestination": "ME", "storagePort": port,
                                       "cache": str(tmp_path)})  # fmt: skip
    scp = StorageSCP(SimpleNamespace(config=config), "127.0.0.1")  # type: ignore[arg-type]
    closing, later = threading.Event(), []

    def first_move() -> None:
        with scp.receiving(Delivery(None, {"1.2.3.1"})):  # type: ignore[arg-type]
            server = scp._server
            shutdown = server.shutdown

            def slow_shutdown() -> None:  # the real shutdown, begun a moment late: the window made wide
                closing.set()
                time.sleep(0.5)
                shutdown()

            server.shutdown = slow_shutdown

    def second_move() -> None:
        closing.wait(10)
        try:
            with scp.receiving(Delivery(None, {"1.2.3.2"})):  # type: ignore[arg-type]
                socket.create_connection(("127.0.0.1", port), timeout=5).close()  # its own SCP listens
                later.append("received")
        except Exception as exc:  # collected, asserted below
            later.append(exc)

    threads = [threading.Thread(target=first_move), threading.Thread(target=second_move)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert later == ["received"]
    with pytest.raises(OSError):  # and once the last move is done, nobody listens
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
