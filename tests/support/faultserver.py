"""A real HTTP server on 127.0.0.1 whose answers the test scripts, to inject faults.

Each path has a queue of :class:`Reply` objects; they are used in turn and the last one repeats.
A reply can be delayed, hang (accept the request and never answer), promise more bytes than it
sends and close (a truncated body), send part of the body and then stall, or drop the connection
without any answer. Every request is recorded (:class:`Recorded`: method, path, raw query,
case-insensitive headers, body, arrival time) so tests can assert what a client sent::

    fault_server.script("/dicom-web/studies", Reply(503), Reply.json([row]))
    fault_server.script("/dicom-web/studies/*/metadata", Reply(429, headers={"Retry-After": "1"}))
    fault_server.script("/frames", Reply(200, body, truncate_to=10))   # Content-Length: len(body)
    fault_server.script("/slow", Reply(hang=True))                       # never answers
    assert "Authorization" not in fault_server.requests_to("/bulk")[0].headers

Path keys: an exact path first, then keys with ``*``/``?`` (fnmatch, in the order scripted),
``"*"`` matches everything. Unscripted paths get 404 ``no reply scripted``. ``idle_timeout``
closes a kept-alive connection that long idle, silently (as Orthanc's ``Keep-Alive: timeout=1``);
``ssl_context`` (a server one) makes it an https server.
"""

from __future__ import annotations

import fnmatch
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from requests.structures import CaseInsensitiveDict

__all__ = ["FaultServer", "Recorded", "Reply", "fault_server"]


@dataclass
class Reply:
    """One scripted answer. ``Reply(status, body, headers)`` positionally, the rest by keyword.

    - ``delay``: seconds to wait before answering (after reading the request).
    - ``hang``: never answer (until the server stops); with ``truncate_to``, send the headers
      and that much of the body, then stall.
    - ``truncate_to``: announce ``Content-Length: len(body)``, send only this many bytes, close.
    - ``drop``: read the request, then close the connection without a status line.
    - ``drip``: send the body one byte at a time, this many seconds apart (a slow-loris backend).
    - A ``Content-Length`` in ``headers`` is sent as given (so it can lie); otherwise it is
      computed.
    """

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    truncate_to: int | None = None
    drop: bool = False
    drip: float = 0.0

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        """A JSON body, ``Content-Type: application/dicom+json`` unless ``headers`` says otherwise."""
        merged = {"Content-Type": "application/dicom+json", **(headers or {})}
        return cls(status, orjson.dumps(value), merged, **kw)

    @property
    def raw_body(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else bytes(self.body)


@dataclass
class Recorded:
    """One request as the server saw it. ``query`` is the raw query string, undecoded."""

    method: str
    path: str
    query: str
    headers: CaseInsensitiveDict[str]
    body: bytes
    at: float = 0.0  # time.monotonic() when the request line had been read
    peer: tuple[str, int] = ("", 0)  # the client's address and port: one per connection

    @property
    def params(self) -> list[tuple[str, str]]:
        """The query decoded as a form would be (``+`` is a space), repeated keys kept."""
        return parse_qsl(self.query, keep_blank_values=True)

    @property
    def target(self) -> str:
        """Path and raw query, as on the request line."""
        return f"{self.path}?{self.query}" if self.query else self.path


class FaultServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 in a daemon thread; a context manager."""

    def __init__(self, idle_timeout: float | None = None, ssl_context: Any = None) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[Recorded] = []
        self.default = Reply(404, b"no reply scripted")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_timeout  # a kept-alive connection idle this long is closed, without a word

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                at = time.monotonic()
                path, _, query = self.path.partition("?")
                body = self._read_body()
                headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(self.headers.items())
                with outer._lock:
                    outer.requests.append(Recorded(self.command, path, query, headers, body, at, self.client_address))
                    reply = outer._next_reply(path)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if reply.hang and reply.truncate_to is None:
                    outer._stop.wait(300)
                    self.close_connection = True
                    return
                if reply.delay:
                    outer._stop.wait(reply.delay)
                payload = reply.raw_body
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if not any(k.lower() == "content-length" for k in reply.headers):
                    self.send_header("Content-Length", str(len(payload)))
                if reply.truncate_to is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if reply.drip and self.command != "HEAD":
                    try:
                        for i in range(len(payload)):
                            self.wfile.write(payload[i : i + 1])
                            self.wfile.flush()
                            if outer._stop.wait(reply.drip):
                                break
                    except OSError:  # the client gave up: that is the point
                        self.close_connection = True
                    return
                if reply.truncate_to is None:
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                self.wfile.write(payload[: reply.truncate_to])
                self.wfile.flush()
                if reply.hang:
                    outer._stop.wait(300)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                import sys

                if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is a test's point
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if ssl_context is not None:  # https: the listening socket wrapped, each connection a TLS one
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self.url = f"{'https' if ssl_context is not None else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fault-server", daemon=True
        )  # a short poll interval: stop() returns at once instead of after up to 0.5 s

    def _next_reply(self, path: str) -> Reply:
        queue = self.replies.get(path)
        if queue is None:
            pattern = next((k for k in self.replies if k != "*" and any(c in k for c in "*?[") and
                            fnmatch.fnmatchcase(path, k)), None)  # fmt: skip
            queue = self.replies.get(pattern or "*")
        if not queue:
            return self.default
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def script(self, path: str, *replies: Reply) -> None:
        """Answer requests to ``path`` with these replies in turn; the last one repeats."""
        if not replies:
            raise ValueError("script() needs at least one Reply")
        with self._lock:
            self.replies[path] = list(replies)

    def requests_to(self, path: str) -> list[Recorded]:
        """Recorded requests whose path is ``path`` exactly (or matches it, with ``*``)."""
        with self._lock:
            recorded = list(self.requests)
        if any(c in path for c in "*?["):
            return [r for r in recorded if fnmatch.fnmatchcase(r.path, path)]
        return [r for r in recorded if r.path == path]

    def reset(self) -> None:
        """Forget the script and the recorded requests."""
        with self._lock:
            self.replies.clear()
            self.requests.clear()

    def start(self) -> FaultServer:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging handlers, stop serving, close the socket. Idempotent."""
        self._stop.set()
        if self._started:
            self._started = False
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()
