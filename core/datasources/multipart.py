"""``multipart/related`` (RFC 2387): WADO-RS frames and bulk data, STOW-RS bodies, both ways.

Used by the gateway (frames out, STOW-RS in) and by the dicomweb source (frames in, STOW-RS out).

The parser checks the framing instead of trusting it: a body without its closing boundary is
refused (a truncated upload must not store a shorter instance).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Sequence

from .errors import DatasetError, DataSourcesError, PayloadTooLargeError

__all__ = ["Part", "build", "media_params", "parse", "split_media_type"]


class Part:
    """One body part: its (lower-cased) headers and its bytes."""

    __slots__ = ("content", "headers")

    def __init__(self, headers: dict[str, str], content: bytes) -> None:
        self.headers = headers
        self.content = content

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def __repr__(self) -> str:
        return f"Part({self.content_type!r}, {len(self.content)} bytes)"


def split_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``'multipart/related; type="application/dicom"; boundary=x'`` -> ``('multipart/related', {...})``."""
    head, _, rest = value.partition(";")
    return head.strip().lower(), media_params(rest)


def media_params(text: str) -> dict[str, str]:
    """Parameters of a media type (``a=b; c="d;e"``), names lower-cased, quotes removed."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        start = i
        while i < n and text[i] not in "=;":
            i += 1
        name = text[start:i].strip().lower()
        if i >= n or text[i] == ";":
            if name:
                params[name] = ""
            continue
        i += 1  # '='
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] != ";":
                i += 1
            value = text[start:i].strip()
        if name:
            params[name] = value
    return params


def new_boundary() -> str:
    return "datasources-" + os.urandom(12).hex()


def build(
    parts: Sequence[tuple[bytes, str]] | Iterable[tuple[bytes, str]], boundary: str | None = None
) -> tuple[bytes, str]:
    """A body of ``(content, part content type)`` pairs; returns it and its boundary."""
    boundary = boundary or new_boundary()
    chunks: list[bytes] = []
    for content, content_type in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1"), content, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("latin-1"))
    return b"".join(chunks), boundary


def parse(
    body: bytes | bytearray | memoryview | mmap.mmap,
    content_type: str,
    *,
    error: type[DataSourcesError] = DatasetError,
    max_parts: int | None = None,
    max_header_bytes: int = 16384,
) -> list[Part]:
    """The parts of a ``multipart/related`` body; ``error`` (a request's :class:`DatasetError` by
    default, a server answer's ``MalformedResponseError``) if it is not well formed.

    Linear in the body's size: every search starts where the previous one ended and stops at
    the first match, so 6000 small parts cost 6000 short scans, not 6000 scans of the rest.
    ``body`` may be an ``mmap`` of a spooled file. More than ``max_parts`` parts, or a part's
    headers over ``max_header_bytes``, raise :class:`PayloadTooLargeError`.
    """
    media, params = split_media_type(content_type)
    if not media.startswith("multipart/"):
        raise error(f"expected a multipart/related body, got {media or 'no Content-Type'}")
    boundary = params.get("boundary")
    if not boundary:
        raise error("the multipart Content-Type has no boundary")
    if "\r" in boundary or "\n" in boundary or len(boundary) > 200:
        raise error("the multipart boundary is not valid (CR, LF or over 200 characters)")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise error("the multipart body never contains its boundary")
    crlf_delimiter, lf_delimiter = b"\r\n" + delimiter, b"\n" + delimiter
    # CRLF delimiters are preferred (RFC 2046), bare LF ones are a fallback where no CRLF one
    # follows. Each kind's next position is cached and searched again only once passed, so the
    # whole body is scanned at most once per kind (linear), never once per part (quadratic).
    next_crlf = next_lf = -2  # -2: not searched yet; -1: none in the rest of the body
    parts: list[Part] = []
    position = start + len(delimiter)
    size = len(body)
    while True:
        if body[position : position + 2] == b"--":
            return parts
        if body[position : position + 2] == b"\r\n":
            position += 2
        elif body[position : position + 1] == b"\n":
            position += 1
        else:
            raise error("the multipart body has text after a boundary")
        if max_parts is not None and len(parts) >= max_parts:
            raise PayloadTooLargeError(f"the multipart body has more than {max_parts} parts, the most taken")
        headers: dict[str, str] = {}
        header_start = position
        while True:  # header lines, one short search each
            line_end = body.find(b"\n", position, min(size, position + max_header_bytes + 1))
            if line_end < 0:
                if size - header_start > max_header_bytes:
                    raise PayloadTooLargeError(f"a part's headers are over {max_header_bytes} bytes")
                raise error("the multipart body is truncated: a part has no end of headers")
            line = bytes(body[position:line_end]).rstrip(b"\r")
            position = line_end + 1
            if not line:
                break
            if position - header_start > max_header_bytes:
                raise PayloadTooLargeError(f"a part's headers are over {max_header_bytes} bytes")
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        content_start = position
        if next_crlf != -1 and next_crlf < content_start:
            next_crlf = body.find(crlf_delimiter, content_start)
        if next_crlf >= 0:
            content_end, position = next_crlf, next_crlf + len(crlf_delimiter)
        else:
            if next_lf != -1 and next_lf < content_start:
                next_lf = body.find(lf_delimiter, content_start)
            if next_lf < 0:
                raise error("the multipart body is truncated: no closing boundary")
            content_end, position = next_lf, next_lf + len(lf_delimiter)
        parts.append(Part(headers, bytes(body[content_start:content_end])))
