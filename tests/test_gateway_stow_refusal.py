"""``dicomUploadEnabled: false`` refuses ``store.dicom``; the gateway answers a STOW with 405 unread.

One rule (``datasources.uploads.store_refusal``) for every source: a ``get_config()`` that says
``dicomUploadEnabled: false`` explicitly (an absent key stays allowed). The dicomweb source
raises ``NotSupportedError`` for it; the gateway sees it before reading a byte of the body, so a
client that declares a large body and stalls gets its 405 at once, and the archive gets nothing.
A merge source offers upload when its default member takes it.
"""

from __future__ import annotations

import socket
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from datasources import Host
from datasources import multipart as mp
from datasources.errors import NotSupportedError
from datasources.gateway import create_app
from datasources.uploads import store_refusal

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from support.dicomgen import StudySpec, dataset_to_bytes, make_study
from test_gateway_support import served

DICOMWEB = "default.dataSourcesModule.dicomweb"


def pacs(url: str, name: str = "pacs", **extra: Any) -> dict[str, Any]:
    return {"namespace": DICOMWEB, "sourceName": name, "configuration": {"qidoRoot": url, "wadoRoot": url, **extra}}


def merged(default: str, *members: str) -> dict[str, Any]:
    series_merge = {"dataSourceNames": list(members), "defaultDataSourceName": default}
    return {"namespace": "default.dataSourcesModule.merge", "sourceName": "all",
            "configuration": {"seriesMerge": series_merge}}  # fmt: skip


class BodyCounter:
    """ASGI wrapper: how many body bytes the application took from the server."""

    def __init__(self, app: Any) -> None:
        self.app, self.taken = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            self.taken += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def test_the_dicomweb_source_refuses_store_when_upload_is_disabled(orthanc_empty: Any) -> None:
    (ds,) = make_study(StudySpec("refusal-api", n_instances=1))
    before = orthanc_empty.instance_count()
    host = Host({"dataSources": [pacs(orthanc_empty.dicomweb_url, dicomUploadEnabled=False),
                                 pacs(orthanc_empty.dicomweb_url, "open")]})  # fmt: skip
    with pytest.raises(NotSupportedError, match="dicomUploadEnabled: false") as caught:
        host.get_data_source("pacs").store.dicom([dataset_to_bytes(ds)])
    assert caught.value.operation == "store.dicom"
    assert orthanc_empty.instance_count() == before  # nothing was sent
    assert store_refusal(host.get_data_source("pacs")) == "the data source is configured dicomUploadEnabled: false"
    assert store_refusal(host.get_data_source("open")) is None  # absent: allowed, the server decides
    stored = host.get_data_source("open").store.dicom([dataset_to_bytes(ds)])
    assert [o.status for o in stored.outcomes] == ["stored"] and orthanc_empty.instance_count() == before + 1


def test_a_stalled_stow_to_a_disabled_source_gets_405_before_its_body_is_read(orthanc_empty: Any) -> None:
    before = orthanc_empty.instance_count()
    host = Host({"dataSources": [pacs(orthanc_empty.dicomweb_url, dicomUploadEnabled=False)]})
    app = BodyCounter(create_app(host))
    with served(app) as server:
        port = int(server.url.rsplit(":", 1)[1])
        for declared in (50 << 20, 1 << 40):  # under the gateway's bound, and far over it
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    b"POST /pacs/dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b'Content-Type: multipart/related; type="application/dicom"; boundary=x\r\n'
                    b"Content-Length: %d\r\n\r\n--x\r\n" % declared
                )  # then the client stalls: the rest never comes
                started = time.monotonic()
                head, body = read_answer(sock)
                assert time.monotonic() - started < 5
            assert head.split()[1] == b"405", head
            assert b"NotSupportedError" in body and b"dicomUploadEnabled" in body, body
    assert app.taken == 0  # the application never took a byte of either body
    assert orthanc_empty.instance_count() == before


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """An HTTP/1.1 answer's status line and headers, and its body (by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return head, body


def test_gateway_stow_to_a_disabled_source_is_405_and_a_merge_keeps_storing(orthanc_empty: Any, tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    local = {"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "local",
             "configuration": {"root": str(tmp_path / "store"), "cache": str(tmp_path / "index.sqlite")}}  # fmt: skip
    host = Host({"dataSources": [
        pacs(orthanc_empty.dicomweb_url, "closed", dicomUploadEnabled=False),
        pacs(orthanc_empty.dicomweb_url, "open"),
        local,
        merged("open", "open", "local"),
        {**merged("closed", "closed", "local"), "sourceName": "closedall"},
    ]})  # fmt: skip
    assert host.get_data_source("all").get_config()["dicomUploadEnabled"] is True  # its default member stores
    assert host.get_data_source("closedall").get_config()["dicomUploadEnabled"] is False
    client = TestClient(create_app(host))
    datasets = make_study(StudySpec("refusal-gateway", n_instances=3))
    before = orthanc_empty.instance_count()
    for name, ds, status in [("closed", datasets[0], 405), ("closedall", datasets[0], 405),
                             ("all", datasets[1], 200), ("open", datasets[2], 200)]:  # fmt: skip
        body, boundary = mp.build([(dataset_to_bytes(ds), "application/dicom")])
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
        answer = client.post(f"/{name}/dicom-web/studies", content=body, headers=headers)
        assert answer.status_code == status, (name, answer.text)
        if status == 405:
            assert answer.json()["type"] == "NotSupportedError" and "dicomUploadEnabled" in answer.json()["error"]
    assert orthanc_empty.instance_count() == before + 2  # the merge's and the open source's, nothing else
