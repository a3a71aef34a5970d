"""gzip for the gateway's answers, each compressor sized to its body, never for bytes already compressed.

Starlette's GZipMiddleware makes every compressor with zlib's largest window and hash table:
setting those up costs ~90 µs, several times the deflate of a smooth 8 KB frame at level 1,
and a frame is what a viewer asks for most. Here a whole body gets a window no larger than
itself (a window past the end of the data holds nothing to match), and an answer whose bytes
are compressed already (JPEG, JPEG 2000 and other encapsulated frames, deflated datasets,
images, zip) is sent as is: deflating it again is CPU for nothing. A body that does not get
smaller is sent as it was. Large bodies are deflated off the event loop.
"""

from __future__ import annotations

import functools
import zlib
from typing import TYPE_CHECKING

import anyio.to_thread

from ..multipart import split_media_type
from ..transfer import DEFLATED, NATIVE

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["GZip", "accepts_gzip", "gzip_body", "worth_compressing"]

#: Bodies from this size on are deflated in a worker thread (a few milliseconds of CPU).
THREAD_MINIMUM = 128 << 10
_COMPRESSED = ("image/", "video/", "audio/", "font/woff", "application/gzip", "application/x-gzip",
               "application/zip", "application/grpc", "text/event-stream")  # fmt: skip
_UNCOMPRESSED_SYNTAXES = (NATIVE - {DEFLATED}) | {"*"}  # "*": whatever the source has, often native


def accepts_gzip(header: bytes) -> bool:
    """Whether an ``Accept-Encoding`` value takes gzip: ``gzip`` (or ``x-gzip``) with a ``q`` above
    0, else ``*`` with one; a value of ordinary length is read once."""
    return _accepts(header) if len(header) <= 256 else _accepts.__wrapped__(header)


@functools.lru_cache(maxsize=64)
def _accepts(header: bytes) -> bool:
    named = star = None
    for item in header.decode("latin-1").lower().split(","):
        coding, *params = item.split(";")
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding.strip() in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif coding.strip() == "*":
            star = q
    chosen = named if named is not None else star
    return chosen is not None and chosen > 0


def worth_compressing(content_type: str) -> bool:
    """False for bytes that are compressed already: a compressed media type, or parts that are
    (``type="image/jpeg"``, an encapsulated ``transfer-syntax``, in the type or beside it)."""
    media, params = split_media_type(content_type)
    part, inner = "", {}
    if media.startswith("multipart/") and params.get("type"):
        part, inner = split_media_type(params["type"])
    if media.startswith(_COMPRESSED) or part.startswith(_COMPRESSED):
        return False
    syntax = params.get("transfer-syntax") or inner.get("transfer-syntax")
    return syntax is None or syntax in _UNCOMPRESSED_SYNTAXES


def gzip_body(body: bytes, level: int = 1) -> bytes:
    """``body`` as one gzip member, with a window and hash table no larger than the body needs."""
    wbits = max(9, min(15, len(body).bit_length()))
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + wbits, max(1, min(8, wbits - 6)))
    return compressor.compress(body) + compressor.flush()


class GZip:
    """ASGI middleware: answers of at least ``minimum_size`` bytes gzipped for clients that take it."""

    def __init__(self, app: ASGIApp, minimum_size: int = 4096, level: int = 1) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"accept-encoding"), b"")
        if not header or not accepts_gzip(header):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Responder(self, send).send)


class _Responder:
    """The ``send`` of one answer: holds its start until the first body says how to send it."""

    def __init__(self, gzip: GZip, send: Send) -> None:
        self.gzip = gzip
        self.downstream = send
        self.start: Message | None = None
        self.passing = False  # sent as the application made it
        self.compressor: zlib._Compress | None = None  # a streamed answer's

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.passing = not self._compressible(message)
            if self.passing:
                await self.downstream(message)
            return
        if self.passing:
            await self.downstream(message)
            return
        if self.compressor is not None:  # the rest of a streamed answer (or its trailers)
            if kind == "http.response.body":
                message["body"] = await self._deflate(message.get("body", b""), message.get("more_body", False))
            await self.downstream(message)
            return
        start, self.start = self.start, None
        if start is None or kind != "http.response.body":  # pathsend and the like: never compressed
            self.passing = True
            if start is not None:
                await self.downstream(start)
            await self.downstream(message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not more:
            if len(body) >= self.gzip.minimum_size:
                packed = gzip_body(body, self.gzip.level) if len(body) < THREAD_MINIMUM else \
                    await anyio.to_thread.run_sync(gzip_body, body, self.gzip.level)  # fmt: skip
                if len(packed) < len(body):
                    _set(start, b"content-encoding", b"gzip", b"content-length", str(len(packed)).encode())
                    message["body"] = packed
                _vary(start)
            self.passing = True
            await self.downstream(start)
            await self.downstream(message)
            return
        self.compressor = zlib.compressobj(self.gzip.level, zlib.DEFLATED, 31)
        _set(start, b"content-encoding", b"gzip", b"content-length", None)
        _vary(start)
        message["body"] = await self._deflate(body, more)
        await self.downstream(start)
        await self.downstream(message)

    def _compressible(self, start: Message) -> bool:
        if start["status"] in (204, 206, 304) or start.get("trailers"):
            return False
        content_type = ""
        for name, value in start.get("headers", ()):
            if name.lower() == b"content-encoding":
                return False
            if name.lower() == b"content-type":
                content_type = value.decode("latin-1")
        return worth_compressing(content_type)

    async def _deflate(self, body: bytes, more: bool) -> bytes:
        assert self.compressor is not None
        if len(body) >= THREAD_MINIMUM:
            return await anyio.to_thread.run_sync(_stream_chunk, self.compressor, body, more)
        return _stream_chunk(self.compressor, body, more)


def _stream_chunk(compressor: zlib._Compress, body: bytes, more: bool) -> bytes:
    """A chunk of a streamed answer, flushed so the client can use it at once."""
    return compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)


def _set(start: Message, name: bytes, value: bytes, other: bytes, other_value: bytes | None) -> None:
    """Set header ``name`` to ``value`` and ``other`` to ``other_value`` (None: remove it)."""
    headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() not in (name, other)]
    headers.append((name, value))
    if other_value is not None:
        headers.append((other, other_value))
    start["headers"] = headers


def _vary(start: Message) -> None:
    """Add ``Accept-Encoding`` to the answer's ``Vary``."""
    headers = list(start.get("headers", ()))
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"accept-encoding" not in value.lower() and value.strip() != b"*":
                headers[index] = (name, value + b", Accept-Encoding")
            start["headers"] = headers
            return
    headers.append((b"vary", b"Accept-Encoding"))
    start["headers"] = headers
