"""The dicomweb client against hostile backends (a real fault server on loopback): no request without end.

A total deadline per request (a backend dripping a byte a second is cut off), a limit on what a
gzip body may inflate to, ``Retry-After`` never waited past the deadline, and query-string tokens
kept on every request yet masked in logs and ``get_config()``.
"""

from __future__ import annotations

import gzip
import logging
import time
import zlib
from typing import Any

import orjson
import pytest
from datasources import Host
from datasources.errors import BackendTimeoutError, ConfigurationError, HTTPError, MalformedResponseError
from support.faultserver import FaultServer, Reply

ROW = {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}
JSON = {"Content-Type": "application/dicom+json"}


def source(root: str, **options: Any) -> Any:
    configuration = {"wadoRoot": root, "requestOptions": {"retries": 2, "backoff": 0, **options}}
    host = Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "s",
                          "configuration": configuration}]}
    )  # fmt: skip
    return host.get_data_source("s")


@pytest.mark.exclusive
def test_a_backend_dripping_a_byte_a_second_is_cut_off_at_the_deadline(fault_server: FaultServer) -> None:
    body = orjson.dumps([ROW] * 20)
    fault_server.script("/dicom-web/studies", Reply(200, body, JSON, drip=0.5))
    ds = source(f"{fault_server.url}/dicom-web", timeout=5, deadline=2)
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="deadline"):
        ds.query.studies.search()
    elapsed = time.monotonic() - start
    assert 1.9 <= elapsed < 3.5, elapsed  # each byte came within the 5 s timeout: only the deadline stops it
    # the same answer sent at once is read as usual
    fault_server.script("/dicom-web/studies", Reply(200, body, JSON))
    assert len(ds.query.studies.search()) == 20


def bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    chunk = b" " * (1 << 20)
    parts = [compressor.compress(b"[")]
    parts += [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.compress(b"]") + compressor.flush()


def test_gzip_bodies_inflate_only_up_to_the_limit(fault_server: FaultServer) -> None:
    payload = bomb(64 << 20)  # 64 MiB of JSON whitespace in about 64 KiB
    assert len(payload) < 100_000
    ds = source(f"{fault_server.url}/dicom-web", maxDecompressedBytes=4 << 20)
    fault_server.script("/dicom-web/studies", Reply(200, payload, {**JSON, "Content-Encoding": "gzip"}))
    with pytest.raises(MalformedResponseError, match="inflates past 4194304 bytes"):
        ds.query.studies.search()
    # a static tree's .gz file served without Content-Encoding: the same limit
    fault_server.script("/dicom-web/studies", Reply(200, payload, JSON))
    with pytest.raises(MalformedResponseError, match="inflates past"):
        ds.query.studies.search()
    # within the limit, both are read
    small = orjson.dumps([ROW] * 3)
    fault_server.script("/dicom-web/studies", Reply(200, gzip.compress(small), {**JSON, "Content-Encoding": "gzip"}))
    assert len(ds.query.studies.search()) == 3
    fault_server.script("/dicom-web/studies", Reply(200, zlib.compress(small), {**JSON, "Content-Encoding": "deflate"}))
    assert len(ds.query.studies.search()) == 3
    # and the default limit (256 MiB) stops a 300 MiB bomb
    fault_server.script("/dicom-web/studies", Reply(200, bomb(300 << 20), {**JSON, "Content-Encoding": "gzip"}))
    with pytest.raises(MalformedResponseError, match="inflates past 268435456 bytes"):
        source(f"{fault_server.url}/dicom-web").query.studies.search()


@pytest.mark.exclusive
def test_retry_after_is_never_waited_past_the_deadline(fault_server: FaultServer) -> None:
    fault_server.script("/dicom-web/studies", Reply(503, headers={"Retry-After": "30"}), Reply.json([ROW]))
    ds = source(f"{fault_server.url}/dicom-web", deadline=3)
    start = time.monotonic()
    with pytest.raises(HTTPError) as info:
        ds.query.studies.search()
    assert info.value.status == 503 and time.monotonic() - start < 1.5  # gave up at once, no 30 s (or 60 s) wait
    assert len(fault_server.requests_to("/dicom-web/studies")) == 1
    # a Retry-After that fits in what is left is honoured
    fault_server.reset()
    fault_server.script("/dicom-web/studies", Reply(503, headers={"Retry-After": "1"}), Reply.json([ROW]))
    start = time.monotonic()
    assert len(ds.query.studies.search()) == 1
    assert time.monotonic() - start >= 0.9
    # backoff sleeps are cut by the deadline too: a server that keeps failing is given up on in time
    fault_server.reset()
    fault_server.script("/dicom-web/studies", Reply(503, delay=0.4))
    slow = source(f"{fault_server.url}/dicom-web", deadline=1, retries=10, backoff=2)
    start = time.monotonic()
    with pytest.raises(HTTPError):
        slow.query.studies.search()
    assert time.monotonic() - start < 2.5


SECRET = "q5ecret-t0ken-value"


def test_a_root_query_string_is_kept_on_every_request_and_masked_everywhere(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    root = f"{fault_server.url}/dicom-web?access_token={SECRET}&project=p1"
    series = [{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}]
    instance = {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
                "00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]}}  # fmt: skip
    fault_server.script("/dicom-web/studies", Reply.json([ROW]))
    fault_server.script("/dicom-web/studies/1.2.3/series", Reply.json(series))
    fault_server.script("/dicom-web/studies/1.2.3/series/1.2.3.4/metadata", Reply.json([instance]))
    fault_server.script("*/frames/1", Reply(200, b"\x01\x02", {"Content-Type": "application/octet-stream"}))
    ds = source(root, retries=0)
    assert len(ds.query.studies.search(PatientName="DOE*")) == 1
    ds.retrieve.series.metadata("1.2.3")
    assert ds.retrieve.frames("1.2.3", "1.2.3.4", "1.2.3.4.5", [1]) == [b"\x01\x02"]
    assert len(fault_server.requests) == 4
    for request in fault_server.requests:
        assert ("access_token", SECRET) in request.params and ("project", "p1") in request.params, request.target
    search = fault_server.requests_to("/dicom-web/studies")[0]
    assert ("PatientName", "DOE*") in search.params  # the search's own parameters are there too
    fault_server.script("/dicom-web/studies", Reply(500, b"down"))
    with pytest.raises(HTTPError) as info:
        ds.query.studies.search()
    config = ds.get_config()
    assert config["wadoRoot"] == f"{fault_server.url}/dicom-web?access_token=***&project=p1"
    assert "urllib3.connectionpool" in caplog.text and "access_token=***" in caplog.text
    for text in (caplog.text, str(config), str(info.value), repr(ds)):
        assert SECRET not in text


@pytest.mark.parametrize(
    ("compression", "root", "asked"),
    [
        (None, "http://127.0.0.1:{port}/dicom-web", "identity"),  # auto: nothing to gain on loopback
        (None, "http://localhost:{port}/dicom-web", "identity"),
        ("gzip", "http://127.0.0.1:{port}/dicom-web", "gzip, deflate"),
        ("none", "http://127.0.0.1:{port}/dicom-web", "identity"),
    ],
)
def test_compression_is_asked_for_except_from_a_backend_on_this_machine(
    fault_server: FaultServer, compression: str | None, root: str, asked: str
) -> None:
    options = {} if compression is None else {"compression": compression}
    ds = source(root.format(port=fault_server.port), **options)
    fault_server.script(
        "/dicom-web/studies", Reply(200, gzip.compress(orjson.dumps([ROW])), {**JSON, "Content-Encoding": "gzip"})
    )
    assert [r["StudyInstanceUID"] for r in ds.query.studies.search()] == ["1.2.3"]  # gzip is inflated either way
    assert fault_server.requests_to("/dicom-web/studies")[-1].headers["Accept-Encoding"] == asked


def test_remote_roots_are_asked_for_gzip_and_a_bad_compression_is_refused() -> None:
    from datasources_default.dicomweb.config import DicomWebConfig

    remote = DicomWebConfig.from_mapping({"wadoRoot": "https://pacs.example.org/dicom-web"})
    assert remote.accept_encoding == "gzip, deflate"
    mixed = DicomWebConfig.from_mapping(
        {"wadoRoot": "http://[::1]:8042/dicom-web", "qidoRoot": "https://pacs.example.org/q"}
    )
    assert mixed.accept_encoding == "gzip, deflate"  # one session for every root: compressed if any is remote
    assert DicomWebConfig.from_mapping({"wadoRoot": "http://[::1]:8042/dicom-web"}).accept_encoding == "identity"
    with pytest.raises(ConfigurationError, match=r"requestOptions\.compression must be one of auto, gzip, none"):
        DicomWebConfig.from_mapping({"wadoRoot": "http://127.0.0.1/x", "requestOptions": {"compression": "brotli"}})
