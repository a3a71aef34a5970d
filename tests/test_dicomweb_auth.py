"""Credentials that keep working: a real OAuth2 token endpoint, a real Orthanc behind a proxy checking tokens.

The token server (tests/support/oauthserver.py) issues tokens that live ~1.5 s and the proxy
refuses any other; every request kind of the dicomweb source must carry a live one across
several expiries, refresh once after a 401 and retry once, share one refresh between threads,
and never show a secret.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from datasources import Host
from datasources.errors import AuthenticationError, RedirectRefusedError
from support.dicomgen import PRIVATE_OB, StudySpec, make_study
from support.faultserver import FaultServer, Reply
from support.oauthserver import AuthProxy, TokenServer

LIFETIME = 1.5
CLIENT, SECRET = "viewer", "cl1ent-s3cret-VALUE"
SPEC = StudySpec("auth-okafor", patient_name="OKAFOR^NGOZI^A", patient_id="PAT0003", modality="MR",
                 study_date="20231111", description="MR KNEE LEFT", n_series=1, n_instances=2, frames=3)  # fmt: skip
_PROVIDER_URL: dict[str, str] = {}


def fetch_token() -> dict[str, Any]:
    """A "module:function" token provider: asks the test token server, returns its OAuth2 answer."""
    import requests

    answer = requests.post(_PROVIDER_URL["url"], data={"grant_type": "client_credentials"}, auth=(CLIENT, SECRET))
    answer.raise_for_status()
    return answer.json()


@pytest.fixture
def tokens() -> Iterator[TokenServer]:
    with TokenServer(lifetime=LIFETIME) as server:
        server.add_client(CLIENT, SECRET)
        yield server


@pytest.fixture
def proxy(orthanc_empty: Any, tokens: TokenServer) -> Iterator[AuthProxy]:
    with AuthProxy(orthanc_empty.url, tokens) as server:
        yield server


def make_source(proxy: AuthProxy, orthanc: Any, auth: Any, **options: Any) -> tuple[Host, Any]:
    configuration = {
        "name": "pacs",
        "wadoRoot": f"{proxy.url}/dicom-web",
        # Orthanc names itself in BulkDataURIs: reach them through the proxy too
        "bulkDataURI": {"enabled": True, "startsWith": orthanc.dicomweb_url, "prefixWith": f"{proxy.url}/dicom-web"},
        "requestOptions": {"auth": auth, "retries": 0, **options},
    }
    host = Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
                          "configuration": configuration}]}
    )  # fmt: skip
    return host, host.get_data_source("pacs")


CLIENT_CREDENTIALS = {"type": "oauth2-client-credentials", "tokenUrl": None, "clientId": CLIENT,
                      "clientSecret": "${TEST_OAUTH_SECRET}", "scope": "dicomweb"}  # fmt: skip


def client_credentials(tokens: TokenServer, **extra: Any) -> dict[str, Any]:
    return {**CLIENT_CREDENTIALS, "tokenUrl": tokens.token_url, **extra}


def every_kind_of_request(host: Host, ds: Any, datasets: list[Any]) -> None:
    """QIDO at three levels, metadata, frames and bulk data, checked against the stored datasets."""
    study = SPEC.study_uid
    assert [r["StudyInstanceUID"] for r in ds.query.studies.search(PatientID="PAT0003")] == [study]
    series = ds.query.series.search(study)
    assert len(series) == 1
    assert len(ds.query.instances.search(study, series[0]["SeriesInstanceUID"])) == 2
    ds.delete_study_metadata(study)
    host.metadata_store.remove_study(study)
    ds.retrieve.series.metadata(study)
    instances = host.metadata_store.get_study(study)["series"][0]["instances"]
    by_sop = {d.SOPInstanceUID: d for d in datasets}
    for instance in instances:
        original = by_sop[instance["SOPInstanceUID"]]
        size = len(original.PixelData) // 3
        frames = ds.retrieve.frames(study, instance["SeriesInstanceUID"], instance["SOPInstanceUID"], [1, 3])
        assert frames == [original.PixelData[:size], original.PixelData[2 * size :]]
    bulk = [v for v in instances[0].values() if isinstance(v, dict) and "BulkDataURI" in v]
    assert bulk, "Orthanc answers the private OB as a BulkDataURI"
    values = {ds.retrieve.bulk_data_uri(v["BulkDataURI"]) for v in bulk}
    assert PRIVATE_OB in values


def test_every_request_carries_a_live_token_across_several_expiries(
    proxy: AuthProxy, tokens: TokenServer, orthanc_empty: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OAUTH_SECRET", SECRET)
    host, ds = make_source(proxy, orthanc_empty, client_credentials(tokens))
    datasets = make_study(SPEC)
    try:
        result = ds.store.dicom(datasets[:1])  # STOW with the first token
        assert [o.status for o in result.outcomes] == ["stored"]
        rounds = 4
        for i in range(rounds):
            if i:
                time.sleep(LIFETIME + 0.1)  # the token of the last round has expired
            if i == 1:
                assert ds.store.dicom(datasets[1:]).outcomes[0].status == "stored"  # STOW after an expiry
            if i >= 1:
                every_kind_of_request(host, ds, datasets)
        # one token per round (each round began after the last token expired), refreshed before use
        assert tokens.issued == rounds
        assert tokens.grants == ["client_credentials"] * rounds
        assert not proxy.refused, proxy.refused  # shortly-before-expiry refresh: no request was refused
        kinds = {(s.method, s.path.split("/")[-1] if "frames" not in s.path else "frames") for s in proxy.seen}
        assert ("POST", "studies") in kinds and ("GET", "metadata") in kinds and ("GET", "frames") in kinds
    finally:
        orthanc_empty.clear()


def test_a_401_refreshes_once_and_retries_once(
    proxy: AuthProxy, tokens: TokenServer, orthanc_empty: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OAUTH_SECRET", SECRET)
    _, ds = make_source(proxy, orthanc_empty, client_credentials(tokens))
    assert ds.query.studies.search() == []
    tokens.revoke_access()  # the server refuses the token the source still holds
    assert ds.query.studies.search() == []
    assert tokens.issued == 2
    assert [s.live for s in proxy.seen] == [True, False, True]
    # STOW (a request with a body) is sent again with the new token too
    tokens.revoke_access()
    try:
        assert ds.store.dicom(make_study(SPEC)[:1]).outcomes[0].status == "stored"
        assert tokens.issued == 3 and [s.live for s in proxy.seen[-2:]] == [False, True]
    finally:
        orthanc_empty.clear()


def test_a_second_401_is_an_authentication_error_naming_source_and_url(fault_server: FaultServer) -> None:
    fault_server.script("/dicom-web/studies", Reply(401, b'{"error": "invalid_token"}'))
    issued = iter(["first-secret-token", "second-secret-token", "third"])
    host = Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
                          "configuration": {"name": "pacs", "wadoRoot": f"{fault_server.url}/dicom-web",
                                            "requestOptions": {"auth": lambda: next(issued), "retries": 0}}}]}
    )  # fmt: skip
    with pytest.raises(AuthenticationError) as info:
        host.get_data_source("pacs").query.studies.search(PatientName="DOE*")
    message = str(info.value)
    assert message.startswith("pacs: HTTP 401 for GET ") and f"{fault_server.url}/dicom-web/studies" in message
    assert "?" not in info.value.url and "DOE" not in message and "secret" not in message
    assert [r.headers["Authorization"] for r in fault_server.requests] == [
        "Bearer first-secret-token",
        "Bearer second-secret-token",
    ]  # one refresh, one retry, then the error


def test_eight_threads_during_an_expiry_cause_exactly_one_refresh(
    proxy: AuthProxy, tokens: TokenServer, orthanc_empty: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OAUTH_SECRET", SECRET)
    _, ds = make_source(proxy, orthanc_empty, client_credentials(tokens), maxWorkers=4)
    assert ds.query.studies.search() == []
    assert tokens.issued == 1

    def storm() -> list[Any]:
        barrier = threading.Barrier(8)
        results: list[Any] = []

        def search() -> None:
            barrier.wait()
            try:
                results.append(ds.query.studies.search())
            except Exception as exc:  # collected, asserted below
                results.append(exc)

        threads = [threading.Thread(target=search) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return results

    time.sleep(LIFETIME + 0.1)  # expired by time: all 8 find the token stale at once
    assert storm() == [[]] * 8
    assert tokens.issued == 2
    before = len(proxy.seen)
    tokens.revoke_access()  # refused by the server: every thread that sends before the refresh gets a 401
    assert storm() == [[]] * 8
    assert tokens.issued == 3
    second = proxy.seen[before:]
    refused, accepted = [s for s in second if not s.live], [s for s in second if s.live]
    # a thread may read the token only after another has refreshed it: between one and eight are
    # refused, all with the one revoked token, and each search ends in one request with the one new token
    assert 1 <= len(refused) <= 8 and len({s.authorization for s in refused}) == 1
    assert len(accepted) == 8 and len({s.authorization for s in accepted}) == 1
    assert refused[0].authorization != accepted[0].authorization


def test_refresh_token_rotates_and_a_revoked_one_is_an_authentication_error(
    proxy: AuthProxy, orthanc_empty: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with TokenServer(lifetime=LIFETIME, rotate=True) as tokens:
        proxy.tokens = tokens
        refresh = tokens.add_refresh_token(CLIENT)
        tokens.add_client(CLIENT, SECRET)
        (tmp_path / "refresh").write_text(refresh + "\n")
        (tmp_path / "secret").write_text(SECRET)
        auth = {"type": "oauth2-refresh-token", "tokenUrl": f"{tokens.token_url}?tenant=t1", "clientId": CLIENT,
                "clientSecretFile": str(tmp_path / "secret"),
                "refreshTokenFile": str(tmp_path / "refresh")}  # fmt: skip
        _, ds = make_source(proxy, orthanc_empty, auth)
        for _ in range(3):
            assert ds.query.studies.search() == []
            time.sleep(LIFETIME + 0.1)
        assert tokens.issued == 3 and tokens.grants == ["refresh_token"] * 3  # each rotation was kept
        tokens.revoke_refresh()
        with pytest.raises(AuthenticationError) as info:
            ds.query.studies.search()
        error = info.value
        assert str(error).startswith("pacs: HTTP 400 for POST ") and "invalid_grant" in str(error)
        assert error.url == tokens.token_url  # without its query string
        texts = [str(error), repr(error), repr(ds), str(ds.get_config()), caplog.text, str(error.__cause__)]
        for secret in [SECRET, *tokens.every_token]:
            assert all(secret not in text for text in texts), secret
        assert ds.get_config()["requestOptions"]["auth"]["refreshTokenFile"] == "***"


def test_module_function_provider_and_expires_in(proxy: AuthProxy, tokens: TokenServer, orthanc_empty: Any) -> None:
    _PROVIDER_URL["url"] = tokens.token_url
    _, ds = make_source(proxy, orthanc_empty, {"provider": "test_dicomweb_auth:fetch_token"})
    assert ds.query.studies.search() == []
    assert ds.query.studies.search() == []
    assert tokens.issued == 1  # cached while it lives
    time.sleep(LIFETIME + 0.1)
    assert ds.query.studies.search() == []
    assert tokens.issued == 2 and not proxy.refused  # asked again at expiry, not after a 401


def test_no_secret_at_debug_level_in_errors_or_reprs(
    proxy: AuthProxy, tokens: TokenServer, orthanc_empty: Any, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)  # urllib3's request lines included
    monkeypatch.setenv("TEST_OAUTH_SECRET", SECRET)
    host, ds = make_source(proxy, orthanc_empty, client_credentials(tokens))
    ds.query.studies.search()
    tokens.revoke_access()
    ds.query.studies.search()  # a 401 and a refresh, logged at info
    tokens.add_client(CLIENT, "rotated-" + SECRET)  # the source's secret is no longer the right one
    tokens.revoke_access()
    with pytest.raises(AuthenticationError) as info:  # the token endpoint refuses the client now
        ds.query.studies.search()
    assert "invalid_client" in str(info.value) and info.value.status == 401
    texts = [caplog.text, str(info.value), repr(info.value), repr(ds), repr(host), str(ds.get_config())]
    texts += [repr(ds.helpers.session().auth), repr(info.value.__cause__), str(info.value.__context__)]
    assert "401 from" in caplog.text and "studies" in caplog.text  # the log does say what happened
    for secret in [SECRET, *tokens.every_token]:
        assert all(secret not in text for text in texts), secret
    shown = ds.get_config()["requestOptions"]["auth"]
    assert shown == {**CLIENT_CREDENTIALS, "tokenUrl": tokens.token_url, "clientSecret": "***"}


def test_no_credential_on_a_redirect_to_another_port(fault_server: FaultServer) -> None:
    with FaultServer() as other:
        other.script("/dicom-web/studies", Reply.json([]))
        other.script("*", Reply(201, b"{}", {"Content-Type": "application/dicom+json"}))
        fault_server.script("/dicom-web/studies", Reply(302, headers={"Location": f"{other.url}/dicom-web/studies"}))
        host = Host.from_config(
            {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
                              "configuration": {"wadoRoot": f"{fault_server.url}/dicom-web", "requestOptions": {
                                  "auth": lambda: "redirect-secret", "headers": {"X-Api-Key": "key-secret"},
                                  "retries": 0}}}]}
        )  # fmt: skip
        ds = host.get_data_source("pacs")
        assert ds.query.studies.search() == []
        assert fault_server.requests[0].headers["Authorization"] == "Bearer redirect-secret"
        seen = other.requests_to("/dicom-web/studies")
        assert len(seen) == 1 and "Authorization" not in seen[0].headers and "X-Api-Key" not in seen[0].headers
        # a STOW redirected to another origin is not sent there at all
        for status in (307, 308):
            fault_server.script("/dicom-web/studies", Reply(status, headers={"Location": f"{other.url}/stow"}))
            with pytest.raises(RedirectRefusedError, match="another origin"):
                ds.store.dicom(make_study(SPEC)[:1])
            assert other.requests_to("/stow") == []
        # ... but to the same origin it is (a 308 to a new path)
        fault_server.script("/dicom-web/studies", Reply(308, headers={"Location": "/moved/studies"}))
        fault_server.script("/moved/studies", Reply(200, orjson.dumps({}), {"Content-Type": "application/dicom+json"}))
        ds.store.dicom(make_study(SPEC)[:1])
        moved = fault_server.requests_to("/moved/studies")
        assert len(moved) == 1 and moved[0].method == "POST" and b"DICM" in moved[0].body
        assert moved[0].headers["Authorization"] == "Bearer redirect-secret" and len(moved[0].body) > 1000


def test_google_application_default_credentials(
    proxy: AuthProxy, tokens: TokenServer, orthanc_empty: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The google extra, for real: google-auth reads a service-account file and signs a JWT for the
    (loopback) token endpoint named in it; the source refreshes through google-auth at expiry."""
    import google.auth  # noqa: F401  (in requirements-test.txt: this must run, not skip)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    email = "viewer@project.iam.gserviceaccount.com"
    tokens.add_service_account(email, key.public_key())
    account = {"type": "service_account", "project_id": "project", "private_key_id": "k1",
               "private_key": pem.decode(), "client_email": email, "client_id": "1",
               "token_uri": tokens.token_url}  # fmt: skip
    (tmp_path / "account.json").write_bytes(orjson.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "account.json"))
    _, ds = make_source(proxy, orthanc_empty, {"type": "google"})
    assert ds.query.studies.search() == []
    time.sleep(LIFETIME + 0.1)
    assert ds.query.studies.search() == []
    assert tokens.grants == ["urn:ietf:params:oauth:grant-type:jwt-bearer"] * 2 and not proxy.refused
    assert pem.decode().splitlines()[1] not in repr(ds) + str(ds.get_config())


def test_dicomjson_by_url_carries_the_same_credentials(fault_server: FaultServer) -> None:
    """dicomjson by URL uses the same session auth: the document and its files get the token (and a
    refresh after a 401), a file on another origin does not."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    original = dcmread(path)
    document = {"studies": [{"StudyInstanceUID": "1.2.3", "PatientName": "JSON^DOC", "series": [
        {"SeriesInstanceUID": "1.2.3.4", "Modality": "CT", "instances": [
            {"metadata": {"SOPInstanceUID": "1.2.3.4.5"}, "url": "dicomweb:files/ct.dcm"}]}]}]}  # fmt: skip
    fault_server.script("/data/study.json", Reply(401), Reply.json(document))
    with open(path, "rb") as handle:
        fault_server.script("/data/files/ct.dcm", Reply(200, handle.read(), {"Content-Type": "application/dicom"}))
    issued = iter(["json-token-1", "json-token-2"])
    host = Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "doc",
                          "configuration": {"url": f"{fault_server.url}/data/study.json",
                                            "requestOptions": {"auth": lambda: next(issued), "retries": 0}}}]}
    )  # fmt: skip
    ds = host.get_data_source("doc")
    assert [r["StudyInstanceUID"] for r in ds.query.studies.search(PatientName="JSON*")] == ["1.2.3"]
    assert ds.retrieve.bulk_data_uri("files/ct.dcm") == original.PixelData
    sent = [(r.path, r.headers.get("Authorization")) for r in fault_server.requests]
    assert sent == [("/data/study.json", "Bearer json-token-1"), ("/data/study.json", "Bearer json-token-2"),
                    ("/data/files/ct.dcm", "Bearer json-token-2")]  # fmt: skip
    with FaultServer() as other:
        other.script("/ct.dcm", Reply(200, b"raw bytes", {"Content-Type": "application/octet-stream"}))
        assert ds.retrieve.bulk_data_uri(f"{other.url}/ct.dcm") == b"raw bytes"
        assert "Authorization" not in other.requests[0].headers
    assert "json-token" not in str(ds.get_config()) and ds.get_config()["requestOptions"]["auth"] == "***"


def test_reject_and_static_tree_requests_carry_the_token_too(fault_server: FaultServer) -> None:
    """The request kinds Orthanc cannot play: a dcm4chee-style reject, and a static WADO tree's files."""
    issued = iter(["tok-1", "tok-2"])
    fault_server.script("/dicom-web/studies/1.2/series/1.2.3/reject/113039%5EDCM", Reply(401), Reply(200))
    fault_server.script("/static/studies", Reply(200, gzip_json([{"0020000D": {"vr": "UI", "Value": ["1.2"]}}])))
    host = Host.from_config(
        {"dataSources": [
            {"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs", "configuration": {
                "wadoRoot": f"{fault_server.url}/dicom-web", "supportsReject": True,
                "requestOptions": {"auth": lambda: next(issued), "retries": 0}}},
            {"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "tree", "configuration": {
                "wadoRoot": f"{fault_server.url}/static", "staticWado": True,
                "requestOptions": {"auth": {"token": "static-tok"}, "retries": 0}}},
        ]}
    )  # fmt: skip
    host.get_data_source("pacs").reject.series("1.2", "1.2.3")
    rejects = fault_server.requests_to("/dicom-web/studies/1.2/series/1.2.3/reject/113039%5EDCM")
    sent = [(r.method, r.headers["Authorization"]) for r in rejects]
    assert sent == [("POST", "Bearer tok-1"), ("POST", "Bearer tok-2")]  # refreshed once after the 401
    assert [r["StudyInstanceUID"] for r in host.get_data_source("tree").query.studies.search()] == ["1.2"]
    assert fault_server.requests_to("/static/studies")[0].headers["Authorization"] == "Bearer static-tok"


def gzip_json(value: Any) -> bytes:
    import gzip

    return gzip.compress(orjson.dumps(value))
