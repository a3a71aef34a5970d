"""Frames from a dicomweb source on the gateway's event loop (dicomweb/aio.py), and every way out of it.

The gateway awaits ``retrieve.frames_async``: one GET (httptools) over a kept-alive connection, no thread
hop. It only takes the plain case; a redirect, a 401, a 5xx, a refused connection go to the
source's full client (its User-Agent is requests'), which retries, refreshes and types errors.
A real uvicorn serves the gateway; a scripted server on loopback plays the backend, and records
each request with its connection (``peer``) and ``User-Agent``: which lane sent it.
"""

from __future__ import annotations

import gzip
import logging
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pytest.importorskip("starlette")
pytest.importorskip("httptools")

from datasources import Host, IWebApiDataSource, Source, hookimpl
from datasources import multipart as mp
from datasources.gateway import create_app
from support.faultserver import FaultServer, Reply
from support.tlscert import self_signed
from test_gateway_support import served

LANE = "datasources-dicomweb"  # the lane's User-Agent; the session's is python-requests'
TS = "1.2.840.10008.1.2.4.50"
ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
SECRET = "lane-S3cret-key-9d2"


def frame_path(n: int) -> str:
    return f"/dicom-web/studies/1/series/2/instances/{n}/frames/1"


def frame_reply(n: int, **headers: str) -> Reply:
    body, boundary = mp.build([(bytes([n]) * 64, f"application/octet-stream; transfer-syntax={TS}")])
    content_type = f'multipart/related; type="application/octet-stream"; boundary={boundary}'
    return Reply(200, body, {"Content-Type": content_type, **headers})


def gateway_host(url: str, **options: Any) -> Host:
    configuration = {
        "wadoRoot": f"{url}/dicom-web",
        "qidoRoot": f"{url}/dicom-web",
        "requestOptions": {"retries": 2, "backoff": 0, **options},
    }
    return Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "s",
                                  "configuration": configuration}]})  # fmt: skip


@pytest.fixture
def backend() -> Iterator[FaultServer]:
    with FaultServer(idle_timeout=0.4) as server:
        yield server


def get_frame(base: str, n: int, session: requests.Session | None = None) -> requests.Response:
    return (session or requests).get(f"{base}{frame_path(n)}", headers={"Accept": ACCEPT}, timeout=30)


def agents(server: FaultServer, n: int) -> list[str]:
    return [r.headers.get("User-Agent", "").split("/")[0] for r in server.requests_to(frame_path(n))]


def test_frames_come_over_one_kept_alive_connection_labelled_as_the_backend_sent_them(backend: FaultServer) -> None:
    for n in range(1, 6):
        backend.script(frame_path(n), frame_reply(n))
    with served(create_app(gateway_host(backend.url))) as gw, requests.Session() as session:
        answers = [get_frame(gw.url, n, session) for n in range(1, 6)]
    for n, answer in enumerate(answers, 1):
        assert answer.status_code == 200
        (part,) = mp.parse(answer.content, answer.headers["Content-Type"])
        assert part.content == bytes([n]) * 64 and part.transfer_syntax == TS
    sent = [backend.requests_to(frame_path(n))[0] for n in range(1, 6)]
    assert {r.headers["User-Agent"] for r in sent} == {LANE}
    assert len({r.peer for r in sent}) == 1  # one connection, kept alive
    assert sent[0].headers["Accept-Encoding"] == "identity"  # compression auto: identity on loopback
    assert "transfer-syntax=*" in sent[0].headers["Accept"]


def test_a_connection_the_backend_let_go_is_replaced_without_the_full_client(backend: FaultServer) -> None:
    backend.script(frame_path(1), frame_reply(1))
    backend.script(frame_path(2), frame_reply(2, **{"Keep-Alive": "timeout=1"}))
    with served(create_app(gateway_host(backend.url))) as gw:
        assert get_frame(gw.url, 1).status_code == 200
        time.sleep(0.8)  # the backend closed the idle connection after 0.4 s, silently
        assert get_frame(gw.url, 1).status_code == 200
        assert get_frame(gw.url, 2).status_code == 200
        time.sleep(0.8)  # its Keep-Alive says 1 s: kept until 0.75 s, then not used again
        assert get_frame(gw.url, 2).status_code == 200
    assert agents(backend, 1) == [LANE, LANE] and agents(backend, 2) == [LANE, LANE]
    one, two = backend.requests_to(frame_path(1)), backend.requests_to(frame_path(2))
    assert one[0].peer != one[1].peer and two[0].peer != two[1].peer


def test_a_5xx_goes_to_the_full_client_which_retries(backend: FaultServer) -> None:
    backend.script(frame_path(1), Reply(503, b"busy"), Reply(503, b"busy"), frame_reply(1))
    backend.script(frame_path(2), Reply(404, b"no such frame"))
    backend.script(frame_path(3), Reply(503, b"down"))
    with served(create_app(gateway_host(backend.url))) as gw:
        ok = get_frame(gw.url, 1)
        missing = get_frame(gw.url, 2)
        down = get_frame(gw.url, 3)
    assert ok.status_code == 200 and mp.parse(ok.content, ok.headers["Content-Type"])[0].content == b"\x01" * 64
    assert agents(backend, 1) == [LANE, "python-requests", "python-requests"]  # one try here, then the retries
    assert missing.status_code == 404 and missing.json()["type"] == "NotFoundError"
    assert down.status_code == 502 and agents(backend, 3) == [LANE] + ["python-requests"] * 3  # retries: 2


def test_a_token_to_fetch_or_a_401_goes_through_the_full_client(backend: FaultServer) -> None:
    tokens = iter(["first-T0ken", "second-T0ken"])
    asked = []

    def provider() -> dict[str, Any]:
        asked.append(1)
        return {"access_token": next(tokens), "expires_in": 3600}

    backend.script(frame_path(1), frame_reply(1))
    backend.script(frame_path(2), Reply(401), Reply(401), frame_reply(2))  # the token was revoked
    with served(create_app(gateway_host(backend.url, auth=provider))) as gw:
        first = get_frame(gw.url, 1)  # no token yet: asking the provider is I/O, not for the event loop
        second = get_frame(gw.url, 2)
        third = get_frame(gw.url, 1)
    assert first.status_code == second.status_code == third.status_code == 200 and len(asked) == 2
    assert agents(backend, 1) == ["python-requests", LANE]
    sent = backend.requests_to(frame_path(2))
    assert [(r.headers["User-Agent"].split("/")[0], r.headers["Authorization"]) for r in sent] == [
        (LANE, "Bearer first-T0ken"),
        ("python-requests", "Bearer first-T0ken"),
        ("python-requests", "Bearer second-T0ken"),
    ]
    assert backend.requests_to(frame_path(1))[1].headers["Authorization"] == "Bearer second-T0ken"


@pytest.mark.exclusive
def test_a_stalled_backend_is_a_504_within_the_timeout_and_is_not_asked_again(backend: FaultServer) -> None:
    backend.script(frame_path(1), Reply(hang=True))
    with served(create_app(gateway_host(backend.url, timeout=0.5))) as gw:
        started = time.monotonic()
        answer = get_frame(gw.url, 1)
        took = time.monotonic() - started
        backend.script(frame_path(1), frame_reply(1))
        assert get_frame(gw.url, 1).status_code == 200  # the stalled connection was dropped, not reused
    assert answer.status_code == 504 and answer.json()["type"] == "BackendTimeoutError"
    assert took < 3 and agents(backend, 1) == [LANE, LANE]


def test_gzip_answers_are_inflated_and_bounded(backend: FaultServer) -> None:
    plain = frame_reply(1)
    backend.script(
        frame_path(1), Reply(200, gzip.compress(plain.raw_body), {**plain.headers, "Content-Encoding": "gzip"})
    )
    bomb_body, boundary = mp.build([(b"\0" * (4 << 20), "application/octet-stream")])
    bomb = {"Content-Type": f"multipart/related; boundary={boundary}", "Content-Encoding": "gzip"}
    backend.script(frame_path(2), Reply(200, gzip.compress(bomb_body), bomb))
    with served(create_app(gateway_host(backend.url, compression="gzip", maxDecompressedBytes=1 << 20))) as gw:
        inflated = get_frame(gw.url, 1)
        refused = get_frame(gw.url, 2)
    assert mp.parse(inflated.content, inflated.headers["Content-Type"])[0].content == b"\x01" * 64
    assert refused.status_code == 502 and refused.json()["type"] == "MalformedResponseError"
    assert agents(backend, 1) == [LANE] and agents(backend, 2) == [LANE]  # decided here, not asked twice
    assert backend.requests_to(frame_path(1))[0].headers["Accept-Encoding"] == "gzip, deflate"


def test_a_large_answer_is_read_by_the_full_client_off_the_event_loop(backend: FaultServer) -> None:
    from datasources_default.dicomweb.aio import LOOP_MAX_BYTES

    big = bytes(range(256)) * ((LOOP_MAX_BYTES + 4096) // 256)
    body, boundary = mp.build([(big, f"application/octet-stream; transfer-syntax={TS}")])
    typed = {"Content-Type": f"multipart/related; boundary={boundary}"}
    backend.script(frame_path(1), Reply(200, body, typed))
    backend.script(frame_path(2), Reply(200, gzip.compress(body), {**typed, "Content-Encoding": "gzip"}))
    with served(create_app(gateway_host(backend.url, compression="gzip"))) as gw:
        plain, inflated = get_frame(gw.url, 1), get_frame(gw.url, 2)
    for answer in (plain, inflated):
        (part,) = mp.parse(answer.content, answer.headers["Content-Type"])
        assert part.content == big and part.transfer_syntax == TS
    assert agents(backend, 1) == agents(backend, 2) == [LANE, "python-requests"]


def test_https_with_the_configured_ca_and_a_refused_certificate(tmp_path: Any) -> None:
    cert, _key, context = self_signed(tmp_path)
    with FaultServer(ssl_context=context) as backend:
        backend.script(frame_path(1), frame_reply(1))
        with served(create_app(gateway_host(backend.url, verify=str(cert)))) as gw:
            trusted = [get_frame(gw.url, 1) for _ in range(3)]
        with served(create_app(gateway_host(backend.url))) as gw:  # the system's CAs: not this certificate
            refused = get_frame(gw.url, 1)
    assert [a.status_code for a in trusted] == [200] * 3
    assert mp.parse(trusted[0].content, trusted[0].headers["Content-Type"])[0].content == b"\x01" * 64
    sent = backend.requests_to(frame_path(1))
    assert [r.headers["User-Agent"] for r in sent] == [LANE] * 3 and len({r.peer for r in sent}) == 1
    assert refused.status_code == 502 and refused.json()["type"] == "ConnectionFailedError"  # from the full client
    assert len(sent) == 3  # no certificate check passed: nothing was asked


def test_credentials_and_headers_go_with_the_lane_and_into_no_log_line(
    backend: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend.script(frame_path(1), frame_reply(1))
    host = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "s",
                                  "configuration": {
                                      "wadoRoot": f"{backend.url}/dicom-web?access_token={SECRET}",
                                      "qidoRoot": f"{backend.url}/dicom-web?access_token={SECRET}",
                                      "requestOptions": {"auth": f"Bearer {SECRET}",
                                                         "headers": {"X-Api-Key": SECRET}}}}]})  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="datasources"), served(create_app(host)) as gw:
        assert get_frame(gw.url, 1).status_code == 200
    (sent,) = backend.requests_to(frame_path(1))
    assert sent.headers["User-Agent"] == LANE and sent.query == f"access_token={SECRET}"
    assert sent.headers["Authorization"] == f"Bearer {SECRET}" and sent.headers["X-Api-Key"] == SECRET
    lines = [r.getMessage() for r in caplog.records]
    assert any(frame_path(1) in line for line in lines) and not any(SECRET in line for line in lines)
    source = host.get_data_source("s")
    assert SECRET not in repr(source.helpers.session()) + repr(host) + str(source.get_config())


class Frames(Source):
    """A source with its own awaitable frames: some it serves on the loop, some it leaves to ``frames``."""

    def __init__(self, configuration: Any = None, host: Any = None) -> None:
        super().__init__(configuration, host)
        self.initialized = 0
        self.called: list[str] = []

    def initialize(self, params: Any = None, query: Any = None) -> list[str]:
        self.initialized += 1
        return []

    async def frames_async(self, study: str, series: str, sop: str, numbers: list[int]) -> list[bytes] | None:
        self.called.append(f"async {sop}")
        if sop == "thread":
            return None
        from datasources.transfer import Frame

        return [Frame(b"\x05" * 8, TS) for _ in numbers]

    def frames(self, study: str, series: str, sop: str, numbers: list[int]) -> list[bytes]:
        self.called.append(f"sync {sop}")
        from datasources.transfer import Frame

        return [Frame(b"\x06" * 8, TS) for _ in numbers]


def test_a_source_of_ones_own_may_serve_frames_on_the_loop_or_decline() -> None:
    made: list[Frames] = []

    def create(configuration: Any, host: Any = None) -> Any:
        made.append(Frames(configuration, host))
        return IWebApiDataSource.from_source(made[-1])

    ext = types.ModuleType("ownframes")
    ext.getDataSourcesModule = hookimpl(lambda: [{"name": "own", "type": "other", "createDataSource": create}])
    host = Host({"dataSources": []})
    host.register_extension(ext, name="ownframes")
    host.add_data_source({"namespace": "ownframes.dataSourcesModule.own", "sourceName": "mine", "configuration": {}})
    (impl,) = made
    with served(create_app(host)) as gw:
        base = f"{gw.url}/dicom-web/studies/1/series/2/instances"
        loop = requests.get(f"{base}/loop/frames/1,2", headers={"Accept": ACCEPT}, timeout=30)
        thread = requests.get(f"{base}/thread/frames/1", headers={"Accept": ACCEPT}, timeout=30)
    assert [p.content for p in mp.parse(loop.content, loop.headers["Content-Type"])] == [b"\x05" * 8] * 2
    assert [p.content for p in mp.parse(thread.content, thread.headers["Content-Type"])] == [b"\x06" * 8]
    assert impl.called == ["async loop", "async thread", "sync thread"] and impl.initialized == 1


class RawBackend:
    """A backend on a bare socket that answers each request with scripted bytes, written in pieces:
    what ``http.server`` cannot send (chunks split mid-size, an interim 1xx, a body ended by the
    close, a broken status line). It records ``(User-Agent, peer)`` of each request."""

    def __init__(self, answer: Any) -> None:
        import socket
        import threading

        self.answer = answer  # (user agent) -> list of byte pieces, or None to close
        self.seen: list[tuple[str, int]] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn, peer[1]), daemon=True).start()

    def _connection(self, conn: Any, port: int) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                agent = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                              if line.lower().startswith(b"user-agent:")), "")  # fmt: skip
                self.seen.append((agent.split("/")[0], port))
                pieces = self.answer(agent)
                for piece in pieces or ():
                    conn.sendall(piece)
                    time.sleep(0.005)  # each piece its own segment: the parser resumes mid-answer
                if pieces is None or pieces[-1] == b"":
                    return  # close: the end of the answer, or no answer

    def close(self) -> None:
        self.sock.close()


def multipart_answer(n: int) -> tuple[bytes, str]:
    reply = frame_reply(n)
    return reply.raw_body, reply.headers["Content-Type"]


def test_chunked_interim_and_close_delimited_answers_are_read_on_the_loop() -> None:
    body, content_type = multipart_answer(7)
    half = len(body) // 2
    chunked = [
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n",
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode(),
        f"{half:x}\r\n".encode()[:1], f"{half:x}\r\n".encode()[1:] + body[:half] + b"\r\n",
        f"{len(body) - half:x}\r\n".encode() + body[half:] + b"\r\n0\r\n\r\n",
    ]  # fmt: skip
    until_close = [f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n".encode(),
                   body[:10], body[10:], b""]  # fmt: skip
    answers = iter([chunked, chunked, until_close, chunked])
    raw = RawBackend(lambda agent: next(answers))
    try:
        with served(create_app(gateway_host(raw.url))) as gw, requests.Session() as session:
            got = [get_frame(gw.url, n, session) for n in (1, 2, 3, 4)]
    finally:
        raw.close()
    for answer in got:
        assert answer.status_code == 200
        (part,) = mp.parse(answer.content, answer.headers["Content-Type"])
        assert part.content == bytes([7]) * 64 and part.transfer_syntax == TS
    assert [agent for agent, _ in raw.seen] == [LANE] * 4
    ports = [port for _, port in raw.seen]
    assert ports[0] == ports[1] == ports[2] != ports[3]  # kept alive until the answer ended by its close


def test_a_broken_answer_goes_to_the_full_client() -> None:
    body, content_type = multipart_answer(3)
    good = [f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body]

    def answer(agent: str) -> list[bytes]:
        if agent.startswith(LANE):
            return [b"HTTP/1.1 2x0 Nearly\r\nContent-Length: 3\r\n\r\nabc", b""]  # llhttp refuses the status line
        return good

    raw = RawBackend(answer)
    try:
        with served(create_app(gateway_host(raw.url))) as gw:
            got = get_frame(gw.url, 1)
    finally:
        raw.close()
    assert got.status_code == 200 and mp.parse(got.content, got.headers["Content-Type"])[0].content == b"\x03" * 64
    assert [agent for agent, _ in raw.seen] == [LANE, "python-requests"]
