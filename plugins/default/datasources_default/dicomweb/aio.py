"""The dicomweb source's frames on the gateway's event loop: one GET over a kept-alive connection.

A frame through the gateway was a thread hop plus a ``requests`` GET: about 4 ms of CPU for an
8 KB frame, where Orthanc itself takes ~7 ms to answer it (http.client's email-based header
parser alone compiles a regex for every multipart boundary). This lane writes the GET itself and
reads the answer with httptools (llhttp, the parser of uvicorn and Node) in an asyncio protocol,
on a small pool of kept-alive connections per origin, and handles only the plain case: a trusted
origin, credentials at hand (static, forwarded, or a token still fresh), a 200 answer of at most
:data:`LOOP_MAX_BYTES` in time. Anything else (a redirect, a 401 that may need a new token, a
429/5xx to retry with backoff, a refused or reset connection, a broken or larger answer) is
handed to the source's synchronous client, which has the full rules: retries with
``Retry-After``, token refresh, redirects, typed errors. A GET is idempotent, so asking again
there is safe. A backend silent past ``requestOptions.timeout`` is a ``BackendTimeoutError``
here: asking again would double the wait.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools  # installed with the source (the gateway's uvicorn parses with it too)
from datasources.errors import BackendTimeoutError, MalformedResponseError, redact_url

from .transport import inflate

__all__ = ["AsyncLane", "Fallback"]

log = logging.getLogger("datasources.dicomweb")

#: Answers larger than this are left to the synchronous client: copying, inflating and parsing
#: them must not hold the event loop (8 MB: a few milliseconds; a viewer's frames are far smaller).
LOOP_MAX_BYTES = 8 << 20
_MAX_HEADER_BYTES = 64 << 10
_USER_AGENT = "datasources-dicomweb"
_UNSAFE = re.compile(r"[\r\n\x00]")  # in a header value or the target: never written (injection)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


class Fallback(Exception):
    """This request is not for the lane: send it through the synchronous client."""


class _Closed(Exception):
    """The server closed the connection before a whole answer."""


class _Wire(asyncio.Protocol):
    """One connection: its answer to one GET at a time, parsed as it arrives (httptools callbacks)."""

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit  # the source's maxDecompressedBytes
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.expires = float("inf")  # when the server's Keep-Alive timeout lets it go
        self.usable = True  # no stray bytes, not closed: may carry the next GET
        self.waiter: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
        self.url = ""
        self._begin()

    def _begin(self) -> None:
        self.status = 0
        self.fields: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.headers: dict[str, str] = {}
        self.out = bytearray()
        self.decoder: Any = None
        self.encoding = "identity"
        self.until_close = False  # neither Content-Length nor chunked: the body ends with the connection
        self.failure: BaseException | None = None

    def start(self, request: bytes, url: str) -> asyncio.Future[tuple[int, dict[str, str], bytes]]:
        """Send ``request``; the future is its answer (or the reason there is none)."""
        assert self.transport is not None
        self._begin()
        self.url = url
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()

    # -- asyncio -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for: the connection is not fit to reuse
            return
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # a callback's failure, or llhttp's: the answer is broken
            self._fail(self.failure or Fallback(f"a broken answer ({type(exc).__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.until_close and self.status >= 200 and self.failure is None:
            try:
                self.on_message_complete()  # the end of the stream ends such a body
            except Exception as failure:
                self._fail(failure)
        if not waiter.done():
            waiter.set_exception(_Closed())

    # -- httptools ------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > _MAX_HEADER_BYTES:
            self._stop(Fallback("headers over 64 KB"))
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = status = self.parser.get_status_code()
        if status < 200:  # 1xx: an interim answer, the real one follows
            return
        self.headers = answer = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.fields}
        if status != 200:
            self._stop(Fallback(f"HTTP {status}"))  # the synchronous client asks again, reads it its way
        length = answer.get("content-length")
        if length is not None and not length.strip().isdigit():
            self._stop(Fallback("a bad Content-Length"))
        if length is not None and int(length) > LOOP_MAX_BYTES:
            self._stop(Fallback("a large answer"))
        self.until_close = length is None and "chunked" not in answer.get("transfer-encoding", "").lower()
        self.encoding = encoding = answer.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self.decoder = zlib.decompressobj(wbits=47)
        elif encoding not in ("identity", ""):
            self._stop(Fallback(f"Content-Encoding {encoding}"))

    def on_body(self, body: bytes) -> None:
        out = self.out
        if self.decoder is None:
            out += body  # as the synchronous client: only an inflation is bounded
        else:  # never more than the loop's share at once, nor past maxDecompressedBytes
            try:
                inflate(self.decoder, body, out, min(self.limit, LOOP_MAX_BYTES + 1), self.url, self.name,
                        over=None if self.limit <= LOOP_MAX_BYTES else Fallback("a large answer"))  # fmt: skip
            except Exception as exc:
                self._stop(exc)
        if len(out) > LOOP_MAX_BYTES:
            self._stop(Fallback("a large answer"))

    def on_message_complete(self) -> None:
        if self.status < 200:
            self._begin()
            return
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.decoder is not None and not self.decoder.eof and self.out:
            where = f"{self.name}: {redact_url(self.url)}"
            self._stop(MalformedResponseError(f"{where}: the {self.encoding} answer was cut short"))
        if not self.parser.should_keep_alive() or self.until_close:
            self.close()
        else:
            self.expires = _expires(self.headers.get("keep-alive"))
        waiter.set_result((self.status, self.headers, bytes(self.out)))

    def _stop(self, exc: BaseException) -> None:
        """End the answer with ``exc`` (raised inside a callback: llhttp stops there)."""
        self.failure = exc
        raise exc

    def _fail(self, exc: BaseException) -> None:
        self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)


class _Origin:
    """The idle connections to one origin, and a bound on those open at once."""

    def __init__(self, limit: int) -> None:
        self.idle: list[_Wire] = []
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

    async def _open(self, key: tuple[str, str, int]) -> _Wire:
        scheme, host, port = key
        context = self._ssl_context() if scheme == "https" else None
        _, wire = await asyncio.get_running_loop().create_connection(
            lambda: _Wire(self.limit, self.name), host, port, ssl=context, server_hostname=host if context else None
        )
        sock = wire.transport.get_extra_info("socket") if wire.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return wire

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
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = _request(target, [("Host", parts.netloc.rpartition("@")[2]), ("User-Agent", _USER_AGENT),
                                    ("Accept", accept), *headers.items()])  # fmt: skip
        origin = self._origin(key)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("GET %s", redact_url(url))
        budget = min(self.timeout, self.deadline)
        ends = time.monotonic() + budget
        async with origin.slots:
            wire = _take_idle(origin)
            try:
                if wire is not None:
                    try:
                        return await self._exchange(wire, origin, request, url, ends)
                    except _Closed:  # a kept-alive connection the server closed
                        wire.close()
                        log.debug("%s: kept-alive connection gone: a new one", self.name)
                wire = await asyncio.wait_for(self._open(key), max(0.001, ends - time.monotonic()))
                return await self._exchange(wire, origin, request, url, ends)
            except BaseException as exc:
                if wire is not None:
                    wire.close()
                if isinstance(exc, asyncio.TimeoutError):
                    raise BackendTimeoutError(
                        f"{self.name}: GET {redact_url(url)} timed out after {budget:g}s"
                    ) from None
                if isinstance(exc, ConnectionError | OSError | _Closed | ssl.SSLError):
                    raise Fallback(type(exc).__name__) from None  # refused, reset, TLS: the full client's errors
                raise

    async def _exchange(
        self, wire: _Wire, origin: _Origin, request: bytes, url: str, ends: float
    ) -> tuple[int, dict[str, str], bytes]:
        waiter = wire.start(request, url)
        timer = asyncio.get_running_loop().call_later(max(0.001, ends - time.monotonic()), _expire, waiter)
        try:
            answer = await waiter
        finally:
            timer.cancel()
        if wire.usable:
            origin.idle.append(wire)
        return answer

    def close(self) -> None:
        """Close the idle connections (from any thread: a closed loop has closed them already)."""
        origins, self._origins = self._origins, {}
        loop, self._loop = self._loop, None
        for origin in origins.values():
            for wire in origin.idle:
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(wire.close)
        for origin in origins.values():
            origin.idle.clear()


def _request(target: str, headers: list[tuple[str, str]]) -> bytes:
    """The bytes of ``GET target``; a target or header that would break the message is not sent here."""
    if " " in target or _UNSAFE.search(target) or not all(_TOKEN.match(k) for k, _ in headers):
        raise Fallback("a target or header name the lane does not write")
    if any(_UNSAFE.search(v) for _, v in headers):
        raise Fallback("a header value the lane does not write")
    text = f"GET {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise Fallback("a header that is not Latin-1") from None


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _take_idle(origin: _Origin) -> _Wire | None:
    """The most recently used idle connection the server has not let go yet (others are closed)."""
    now = time.monotonic()
    while origin.idle:
        wire = origin.idle.pop()
        if wire.usable and wire.expires > now:
            return wire
        wire.close()
    return None


def _expires(keep_alive: str | None) -> float:
    """When a connection answered with ``Keep-Alive: timeout=N`` should no longer be used."""
    seconds = _keep_alive_seconds(keep_alive) if keep_alive and len(keep_alive) <= 256 else None
    return float("inf") if seconds is None else time.monotonic() + seconds


@functools.lru_cache(maxsize=64)
def _keep_alive_seconds(keep_alive: str) -> float | None:
    """How long to keep a connection whose answer said ``keep_alive`` (a quarter second spare)."""
    for item in keep_alive.split(","):
        key, _, value = item.strip().partition("=")
        if key.strip().lower() == "timeout":
            try:
                return max(0.0, float(value) - 0.25)
            except ValueError:
                return None
    return None
