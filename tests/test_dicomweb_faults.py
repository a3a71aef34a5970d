"""The dicomweb source under faults from a real HTTP server on loopback, and with real auth."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest
from datasources import Host
from datasources.errors import (
    AuthenticationError,
    BackendTimeoutError,
    ConfigurationError,
    ConnectionFailedError,
    HTTPError,
    MalformedResponseError,
    UnsafePathError,
)
from support.faultserver import FaultServer, Reply
from support.ports import free_port

STUDY = "1.2.3"
ROW = {"0020000D": {"vr": "UI", "Value": [STUDY]}, "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^J"}]}}
JSON = {"Content-Type": "application/dicom+json"}


def source(url: str, **options: Any) -> Any:
    configuration = {"wadoRoot": f"{url}/dicom-web", "requestOptions": {"retries": 2, "backoff": 0, **options}}
    host = Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "s",
                          "configuration": configuration}]}
    )  # fmt: skip
    return host, host.get_data_source("s")


def instance(series: str, sop: str) -> dict[str, Any]:
    return {
        "0020000D": {"vr": "UI", "Value": [STUDY]},
        "0020000E": {"vr": "UI", "Value": [series]},
        "00080018": {"vr": "UI", "Value": [sop]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
    }


def test_503_then_200_is_retried(fault_server: FaultServer) -> None:
    fault_server.script("/dicom-web/studies", Reply(503), Reply(200, orjson.dumps([ROW]), JSON))
    _, ds = source(fault_server.url)
    assert [r["StudyInstanceUID"] for r in ds.query.studies.search()] == [STUDY]
    assert len(fault_server.requests_to("/dicom-web/studies")) == 2


def test_retry_after_is_honoured(fault_server: FaultServer) -> None:
    fault_server.script(
        "/dicom-web/studies", Reply(429, headers={"Retry-After": "1"}), Reply(200, orjson.dumps([ROW]), JSON)
    )
    _, ds = source(fault_server.url)
    start = time.monotonic()
    assert len(ds.query.studies.search()) == 1
    assert time.monotonic() - start >= 0.9  # waited as the server asked, not the (zero) backoff


def test_retries_give_up_with_a_typed_error(fault_server: FaultServer) -> None:
    fault_server.script("/dicom-web/studies", Reply(503, b'{"Message": "busy"}'))
    _, ds = source(fault_server.url)
    with pytest.raises(HTTPError) as info:
        ds.query.studies.search()
    assert info.value.status == 503 and "busy" in str(info.value)
    assert len(fault_server.requests_to("/dicom-web/studies")) == 3  # the first try and 2 retries


def test_garbage_json_and_wrong_shapes(fault_server: FaultServer) -> None:
    _, ds = source(fault_server.url)
    fault_server.script("/dicom-web/studies", Reply(200, b"{not json", JSON))
    with pytest.raises(MalformedResponseError, match="did not answer JSON"):
        ds.query.studies.search()
    fault_server.script("/dicom-web/studies", Reply(200, b'{"a": 1}', JSON))
    with pytest.raises(MalformedResponseError, match="JSON array"):
        ds.query.studies.search()


def test_truncated_bodies(fault_server: FaultServer) -> None:
    _, ds = source(fault_server.url)
    frames = "/dicom-web/studies/1/series/2/instances/3/frames/1"
    body = b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + b"\x01" * 64 + b"\r\n--b--\r\n"
    multipart = {"Content-Type": "multipart/related; type=application/octet-stream; boundary=b"}
    fault_server.script(frames, Reply(200, body, multipart))
    assert ds.retrieve.frames("1", "2", "3", 1) == [b"\x01" * 64]
    fault_server.script(frames, Reply(200, body, multipart, truncate_to=len(body) - 20))
    with pytest.raises(MalformedResponseError, match="cut short"):
        ds.retrieve.frames("1", "2", "3", 1)
    fault_server.script(frames, Reply(200, body[:-12], multipart))  # complete HTTP body, no closing boundary
    with pytest.raises(MalformedResponseError, match="truncated"):
        ds.retrieve.frames("1", "2", "3", 1)


@pytest.mark.exclusive
def test_a_hanging_server_times_out(fault_server: FaultServer) -> None:
    fault_server.script("/dicom-web/studies", Reply(hang=True))
    _, ds = source(fault_server.url, timeout=0.5, retries=0)
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="timed out"):
        ds.query.studies.search()
    assert time.monotonic() - start < 10


def test_connection_refused() -> None:
    port = free_port()
    _, ds = source(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(ConnectionFailedError):
        ds.query.studies.search()


def test_a_failed_retrieve_leaves_the_store_as_it_was(fault_server: FaultServer) -> None:
    series = [{"0020000E": {"vr": "UI", "Value": [s]}, "00200011": {"vr": "IS", "Value": [n]}}
              for n, s in enumerate(["1.2.3.1", "1.2.3.2"], start=1)]  # fmt: skip
    fault_server.script(f"/dicom-web/studies/{STUDY}/series", Reply(200, orjson.dumps(series), JSON))
    fault_server.script(
        f"/dicom-web/studies/{STUDY}/series/1.2.3.1/metadata",
        Reply(200, orjson.dumps([instance("1.2.3.1", "9")]), JSON),
    )
    fault_server.script(f"/dicom-web/studies/{STUDY}/series/1.2.3.2/metadata", Reply(500, b"disk on fire"))
    host, ds = source(fault_server.url, retries=0)
    with pytest.raises(HTTPError, match="500"):
        ds.retrieve.series.metadata(STUDY)
    assert host.metadata_store.get_study(STUDY) is None
    # not cached: once the server recovers, asking again works
    fault_server.script(
        f"/dicom-web/studies/{STUDY}/series/1.2.3.2/metadata",
        Reply(200, orjson.dumps([instance("1.2.3.2", "8")]), JSON),
    )
    assert set(ds.retrieve.series.metadata(STUDY)) == {"1.2.3.1", "1.2.3.2"}
    assert len(host.metadata_store.get_study(STUDY)["series"]) == 2


def test_token_provider_is_asked_again_after_a_401(fault_server: FaultServer) -> None:
    tokens = iter(["expired-token", "fresh-token"])
    fault_server.script("/dicom-web/studies", Reply(401), Reply(200, orjson.dumps([ROW]), JSON))
    _, ds = source(fault_server.url, auth=lambda: next(tokens))
    assert len(ds.query.studies.search()) == 1
    sent = [r.headers.get("Authorization") for r in fault_server.requests_to("/dicom-web/studies")]
    assert sent == ["Bearer expired-token", "Bearer fresh-token"]


def test_auth_is_sent_only_to_the_configured_origin(fault_server: FaultServer) -> None:
    other = FaultServer().start()
    try:
        other.script("/elsewhere/bulk", Reply(200, b"payload", {"Content-Type": "application/octet-stream"}))
        fault_server.script("/dicom-web/studies", Reply(200, orjson.dumps([ROW]), JSON))
        _, ds = source(fault_server.url, auth="Bearer sekrit-token", headers={"X-Api-Key": "sekrit-key"})
        ds.query.studies.search()
        inside = fault_server.requests_to("/dicom-web/studies")[0].headers
        assert inside["Authorization"] == "Bearer sekrit-token" and inside["X-Api-Key"] == "sekrit-key"
        assert ds.retrieve.bulk_data_uri(f"{other.url}/elsewhere/bulk") == b"payload"
        outside = other.requests_to("/elsewhere/bulk")[0].headers
        assert "Authorization" not in outside and "X-Api-Key" not in outside
        _, strict = source(fault_server.url, auth="Bearer sekrit-token", bulkDataAuth="refuse-others")
        with pytest.raises(UnsafePathError, match="not one of the configured roots"):
            strict.retrieve.bulk_data_uri(f"{other.url}/elsewhere/bulk")
    finally:
        other.stop()


def test_basic_auth_against_orthanc(orthanc_basic_auth: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url, user, password = orthanc_basic_auth.url, orthanc_basic_auth.user, orthanc_basic_auth.password
    _, good = source(url, auth=f"{user}:{password}")
    assert good.query.studies.search() == []
    _, bad = source(url, auth=f"{user}:wrong-{password}")
    with pytest.raises(AuthenticationError) as info:
        bad.query.studies.search()
    assert info.value.status == 401
    config = good.get_config()
    texts = [str(info.value), repr(info.value), repr(good), repr(bad), str(config), caplog.text]
    texts += [repr(info.value.__cause__), str(info.value.__cause__)]
    import base64

    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    for text in texts:
        assert password not in text and encoded not in text
    assert config["requestOptions"]["auth"] == "***"


def test_configuration_errors_and_warnings() -> None:
    def make(configuration: dict[str, Any]) -> Any:
        host = Host.from_config(
            {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "s",
                              "configuration": configuration}]},
            strict=True,
        )  # fmt: skip
        return host.get_data_source("s")

    with pytest.raises(Exception, match="wadoRoot"):
        make({})
    with pytest.raises(Exception, match="supportsWildcard must be true or false"):
        make({"wadoRoot": "http://127.0.0.1:1/dw", "supportsWildcard": "yes"})
    with pytest.raises(Exception, match="must not carry credentials"):
        make({"wadoRoot": "http://u:p@127.0.0.1:1/dw"})
    with pytest.raises(Exception, match=r"requestOptions\.timeout"):
        make({"wadoRoot": "http://127.0.0.1:1/dw", "requestOptions": {"timeout": "soon"}})
    with pytest.warns(UserWarning, match="'colour'"):
        make({"wadoRoot": "http://127.0.0.1:1/dw", "colour": "blue"})
    assert issubclass(ConfigurationError, ValueError)


def test_a_redirect_elsewhere_carries_no_credentials(fault_server: FaultServer) -> None:
    with FaultServer() as other:
        other.script("/moved/studies", Reply(200, orjson.dumps([ROW]), JSON))
        fault_server.script("/dicom-web/studies", Reply(302, headers={"Location": f"{other.url}/moved/studies"}))
        _, ds = source(fault_server.url, auth="Bearer sekrit-token", headers={"X-Api-Key": "sekrit-key"})
        assert len(ds.query.studies.search()) == 1
        followed = other.requests_to("/moved/studies")[0].headers
        assert "Authorization" not in followed and "X-Api-Key" not in followed


@pytest.mark.exclusive
def test_a_huge_retry_after_is_capped(fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from datasources_default.dicomweb import client

    monkeypatch.setattr(client._CappedRetry, "MAX_RETRY_AFTER", 0.2)
    fault_server.script(
        "/dicom-web/studies", Reply(503, headers={"Retry-After": "3600"}), Reply(200, orjson.dumps([ROW]), JSON)
    )
    _, ds = source(fault_server.url)
    start = time.monotonic()
    assert len(ds.query.studies.search()) == 1
    assert time.monotonic() - start < 5
