"""The dicomweb source's frames on the gateway's event loop: one GET over a kept-alive connection.

A frame through the gateway was a thread hop plus a ``requests`` GET: about 4 ms of CPU for an
8 KB frame, where Orthanc itself takes ~7 ms to answer it (http.client's email-based header
parser alone compiles a regex for every multipart boundary). This lane sends the GET with h11 on
asyncio streams instead, on a small pool of kept-alive connections per origin, and handles only
the plain case: a trusted origin, credentials at hand (static, forwarded, or a token still
fresh), a 200 answer of at most :data:`LOOP_MAX_BYTES` in time. Anything else (a redirect, a
401 that may need a new token, a 429/5xx to retry with backoff, a refused or reset connection,
a larger answer) is handed to the source's synchronous client, which has the full rules:
retries with ``Retry-After``, token refresh, redirects, typed errors. A GET is idempotent, so
asking again there is safe. A backend silent past ``requestOptions.timeout`` is a
``BackendTimeoutError`` here: asking again would double the wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import h11  # installed with the source (the gateway's uvicorn has it too)
from datasources.errors import BackendTimeoutError, MalformedResponseError, redact_url

from .transport import inflate

__all__ = ["AsyncLane", "Fallback"]

log = logging.getLogger("datasources.dicomweb")

_CHUNK = 1 << 16
#: Answers larger than this are left to the synchronous client: copying, inflating and parsing
#: them must not hold the event loop (8 MB: a few milliseconds; a viewer's frames are far smaller).
LOOP_MAX_BYTES = 8 << 20
_USER_AGENT = "datasources-dicomweb"


class Fallback(Exception):
    """This request is not for the lane: send it through the synchronous client."""


class _Conn:
    __slots__ = ("expires", "h11", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, h11_conn: Any) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11_conn
        self.expires = float("inf")  # when the server's Keep-Alive timeout lets it go

    def close(self) -> None:
        self.writer.close()


class _Origin:
    """The idle connections to one origin, and a bound on those open at once."""

    def __init__(self, limit: int) -> None:
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(limit)


class AsyncLane:
    """GETs of one dicomweb source, on the running event loop; see the module docstring."""

    def __init__(
        self,
        *,
        name: str,
        headers: Callable[[str], Mapping[str, str] | None],
        timeout: float,
        deadline: float,
        verify: bool | str,
        max_decompressed_bytes: int,
        max_connections: int,
    ) -> None:
        self.name = name
        self._headers = headers  # url -> the headers to send (None: not for the lane)
        self.timeout = timeout
        self.deadline = deadline
        self.verify = verify
        self.limit = max_decompressed_bytes
        self.max_connections = max_connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        self._ssl: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"AsyncLane({self.name!r}, {sum(len(o.idle) for o in self._origins.values())} idle)"

    # -- connections ------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self.verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif isinstance(self.verify, str):
                path = self.verify
                context = ssl.create_default_context(
                    cafile=None if os.path.isdir(path) else path, capath=path if os.path.isdir(path) else None
                )
            else:
                context = ssl.create_default_context()
            self._ssl = context
        return self._ssl

    def _origin(self, key: tuple[str, str, int]) -> _Origin:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections and semaphores belong to one loop
            self._origins = {}
            self._loop = loop
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(self.max_connections)
        return origin

    async def _open(self, key: tuple[str, str, int]) -> _Conn:
        scheme, host, port = key
        context = self._ssl_context() if scheme == "https" else None
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer, h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024))

    # -- one GET ----------------------------------------------------------------------------

    async def get(self, url: str, accept: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (names lower-cased) and the whole (inflated) body of ``GET url``.

        Raises :class:`Fallback` whenever the synchronous client should do it instead.
        """
        headers = self._headers(url)
        if headers is None:
            raise Fallback("not a request for the lane")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Fallback("not an http(s) URL")
        key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        sent = [("Host", host), ("User-Agent", _USER_AGENT), ("Accept", accept), *headers.items()]
        origin = self._origin(key)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("GET %s", redact_url(url))
        budget = min(self.timeout, self.deadline)
        ends = time.monotonic() + budget
        async with origin.slots:
            conn = _take_idle(origin)
            try:
                if conn is not None:
                    try:
                        return await asyncio.wait_for(self._exchange(conn, origin, target, sent, url), budget)
                    except (ConnectionError, _Closed) as exc:  # a kept-alive connection the server closed
                        conn.close()
                        log.debug("%s: kept-alive connection gone (%s): a new one", self.name, type(exc).__name__)
                conn = await asyncio.wait_for(self._open(key), max(0.001, ends - time.monotonic()))
                return await asyncio.wait_for(
                    self._exchange(conn, origin, target, sent, url), max(0.001, ends - time.monotonic())
                )
            except BaseException as exc:
                if conn is not None:
                    conn.close()
                if isinstance(exc, asyncio.TimeoutError):
                    raise BackendTimeoutError(
                        f"{self.name}: GET {redact_url(url)} timed out after {budget:g}s"
                    ) from None
                if isinstance(exc, ConnectionError | OSError | _Closed | ssl.SSLError):
                    raise Fallback(type(exc).__name__) from None  # refused, reset, TLS: the full client's errors
                if type(exc).__module__.startswith("h11"):
                    raise Fallback(type(exc).__name__) from None  # a broken answer: the full client judges it
                raise

    async def _exchange(
        self, conn: _Conn, origin: _Origin, target: str, headers: list[tuple[str, str]], url: str
    ) -> tuple[int, dict[str, str], bytes]:

        c = conn.h11
        conn.writer.write(
            c.send(h11.Request(method="GET", target=target, headers=headers)) + c.send(h11.EndOfMessage())
        )
        response = await self._next(conn)
        while isinstance(response, h11.InformationalResponse):
            response = await self._next(conn)
        if not isinstance(response, h11.Response):
            raise _Closed()
        status = response.status_code
        answer = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        if status != 200:
            conn.close()  # the synchronous client asks again and reads the answer its own way
            raise Fallback(f"HTTP {status}")
        if int(answer.get("content-length") or 0) > LOOP_MAX_BYTES:
            conn.close()
            raise Fallback("a large answer")
        encoding = answer.get("content-encoding", "identity").strip().lower()
        decoder = zlib.decompressobj(wbits=47) if encoding in ("gzip", "x-gzip", "deflate") else None
        if decoder is None and encoding not in ("identity", ""):
            conn.close()
            raise Fallback(f"Content-Encoding {encoding}")
        out = bytearray()
        while True:
            event = await self._next(conn)
            if isinstance(event, h11.Data):
                if decoder is None:
                    out += event.data  # as the synchronous client: only an inflation is bounded
                else:  # never more than the loop's share at once, nor past maxDecompressedBytes
                    inflate(decoder, bytes(event.data), out, min(self.limit, LOOP_MAX_BYTES + 1), url, self.name,
                            over=None if self.limit <= LOOP_MAX_BYTES else Fallback("a large answer"))  # fmt: skip
                if len(out) > LOOP_MAX_BYTES:
                    conn.close()
                    raise Fallback("a large answer")
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise _Closed()
        if decoder is not None and not decoder.eof and out:
            raise MalformedResponseError(f"{self.name}: {redact_url(url)}: the {encoding} answer was cut short")
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
            conn.expires = _expires(answer.get("keep-alive"))
            origin.idle.append(conn)
        else:
            conn.close()
        return status, answer, bytes(out)

    async def _next(self, conn: _Conn) -> Any:

        while True:
            event = conn.h11.next_event()
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.ConnectionClosed):
                    raise _Closed()
                return event
            data = await conn.reader.read(_CHUNK)
            if not data and conn.h11.their_state is h11.SEND_RESPONSE:
                raise _Closed()  # closed before answering: a kept-alive connection the server let go
            conn.h11.receive_data(data)  # b"" is the end of the stream: h11 answers ConnectionClosed or an error

    def close(self) -> None:
        """Close the idle connections (from any thread: a closed loop has closed them already)."""
        origins, self._origins = self._origins, {}
        loop, self._loop = self._loop, None
        for origin in origins.values():
            for conn in origin.idle:
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(conn.close)
        for origin in origins.values():
            origin.idle.clear()


class _Closed(Exception):
    """The server closed the connection before a whole answer."""


def _take_idle(origin: _Origin) -> _Conn | None:
    """The most recently used idle connection the server has not let go yet (others are closed)."""
    now = time.monotonic()
    while origin.idle:
        conn = origin.idle.pop()
        if conn.expires > now:
            return conn
        conn.close()
    return None


def _expires(keep_alive: str | None) -> float:
    """When a connection answered with ``Keep-Alive: timeout=N`` should no longer be used."""
    if keep_alive:
        for item in keep_alive.split(","):
            key, _, value = item.strip().partition("=")
            if key.strip().lower() == "timeout":
                try:
                    return time.monotonic() + max(0.0, float(value) - 0.25)
                except ValueError:
                    break
    return float("inf")
