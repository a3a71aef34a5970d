"""The gateway's ``forwardAuthorization``: a client's own token reaches the backend, and only its own answers.

A real Orthanc behind a proxy that checks tokens from a real OAuth2 token endpoint; the gateway
(Starlette's TestClient) serves it as a dicomweb source configured with
``requestOptions.forwardAuthorization: true``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from datasources import Host
from datasources.gateway import create_app
from support.dicomgen import StudySpec, make_study
from support.oauthserver import AuthProxy, TokenServer

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its TestClient; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SPEC = StudySpec("forwarding", patient_name="FWD^ONE", patient_id="FWD1", n_series=1, n_instances=1)


@pytest.fixture
def backend(orthanc_empty: Any) -> Iterator[tuple[TokenServer, AuthProxy]]:
    with TokenServer(lifetime=60) as tokens, AuthProxy(orthanc_empty.url, tokens) as proxy:
        tokens.add_client("alice", "alice-secret")
        orthanc_empty.upload(make_study(SPEC))
        try:
            yield tokens, proxy
        finally:
            orthanc_empty.clear()


def token(tokens: TokenServer) -> str:
    answer = requests.post(tokens.token_url, data={"grant_type": "client_credentials"}, auth=("alice", "alice-secret"))
    return str(answer.json()["access_token"])


def gateway(proxy: AuthProxy, forward: bool | None, gateway_token: str | None = None) -> TestClient:
    options: dict[str, Any] = {"retries": 0}
    if forward is not None:
        options["forwardAuthorization"] = forward
    configuration = {"wadoRoot": f"{proxy.url}/dicom-web", "requestOptions": options}
    host = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
                                   "configuration": configuration}]})  # fmt: skip
    return TestClient(create_app(host, token=gateway_token))


def test_a_clients_authorization_is_forwarded_and_metadata_is_not_shared(
    backend: tuple[TokenServer, AuthProxy],
) -> None:
    tokens, proxy = backend
    client = gateway(proxy, True)
    good = {"Authorization": f"Bearer {token(tokens)}"}
    studies = client.get("/dicom-web/studies", headers=good)
    assert studies.status_code == 200 and SPEC.study_uid in studies.text
    assert proxy.seen[-1].authorization == good["Authorization"] and proxy.seen[-1].live
    metadata = client.get(f"/dicom-web/studies/{SPEC.study_uid}/metadata", headers=good)
    assert metadata.status_code == 200 and metadata.json()  # fetched in the source's worker threads too
    assert all(s.live for s in proxy.seen)
    # another client, with a wrong token, gets the backend's refusal, not the first client's cached answer
    for headers in ({"Authorization": "Bearer not-a-token"}, {}):
        refused = client.get(f"/dicom-web/studies/{SPEC.study_uid}/metadata", headers=headers)
        assert refused.status_code == 401 and refused.json()["type"] == "AuthenticationError", headers
        assert SPEC.patient_id not in refused.text
    assert proxy.seen[-2].authorization == "Bearer not-a-token" and proxy.seen[-1].authorization is None


def test_forwarding_is_off_by_default_and_the_gateways_own_token_stays_there(
    backend: tuple[TokenServer, AuthProxy],
) -> None:
    tokens, proxy = backend
    good = {"Authorization": f"Bearer {token(tokens)}"}
    off = gateway(proxy, None)
    refused = off.get("/dicom-web/studies", headers=good)
    assert refused.status_code == 502  # the backend refused the gateway (which has no credentials of its own)
    assert proxy.seen[-1].authorization is None
    # a gateway with its own token checks it, and never passes it on
    guarded = gateway(proxy, True, gateway_token="gateway-own-token")
    assert guarded.get("/dicom-web/studies", headers=good).status_code == 401  # not the gateway's token
    answer = guarded.get("/dicom-web/studies", headers={"Authorization": "Bearer gateway-own-token"})
    assert answer.status_code == 401  # the backend wants a user's token; the gateway's is not forwarded
    assert proxy.seen[-1].authorization is None
    assert all("gateway-own-token" not in (s.authorization or "") for s in proxy.seen)
