"""``multipart/related`` bodies (RFC 2387), as WADO-RS answers frames and bulk data and STOW-RS is sent.

The parser checks the framing instead of trusting it: a body cut short (no closing boundary)
is a :class:`MalformedResponseError`, never a silently shorter frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from datasources.errors import MalformedResponseError

__all__ = ["Part", "boundary_of", "build", "parse"]


class Part:
    __slots__ = ("content", "headers")

    def __init__(self, headers: dict[str, str], content: bytes) -> None:
        self.headers = headers
        self.content = content

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def __repr__(self) -> str:
        return f"Part({self.content_type!r}, {len(self.content)} bytes)"


def _params(content_type: str) -> dict[str, str]:
    out = {}
    for item in content_type.split(";")[1:]:
        key, sep, value = item.strip().partition("=")
        if sep:
            out[key.strip().lower()] = value.strip().strip('"')
    return out


def boundary_of(content_type: str | None) -> str | None:
    """The boundary of a ``multipart/...`` content type, or None if it is not multipart."""
    if not content_type or not content_type.lower().startswith("multipart/"):
        return None
    boundary = _params(content_type).get("boundary")
    if not boundary:
        raise MalformedResponseError(f"multipart answer without a boundary: {content_type!r}")
    return boundary


def parse(body: bytes, content_type: str | None) -> list[Part]:
    """The parts of a multipart body; a non-multipart body is one part."""
    boundary = boundary_of(content_type)
    if boundary is None:
        return [Part({"content-type": content_type or ""}, body)]
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise MalformedResponseError("multipart answer: the boundary never occurs in the body")
    parts: list[Part] = []
    position = start + len(delimiter)
    while True:
        if body[position : position + 2] == b"--":
            return parts  # the closing delimiter
        # skip the line break after the delimiter
        if body[position : position + 2] == b"\r\n":
            position += 2
        elif body[position : position + 1] == b"\n":
            position += 1
        header_end = body.find(b"\r\n\r\n", position)
        separator = 4
        if header_end < 0:
            header_end = body.find(b"\n\n", position)
            separator = 2
        if header_end < 0:
            raise MalformedResponseError("multipart answer is truncated: a part has no end of headers")
        headers = {}
        for line in body[position:header_end].decode("latin-1").splitlines():
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        content_start = header_end + separator
        next_delimiter = body.find(b"\r\n" + delimiter, content_start)
        crlf = 2
        if next_delimiter < 0:
            next_delimiter = body.find(b"\n" + delimiter, content_start)
            crlf = 1
        if next_delimiter < 0:
            raise MalformedResponseError("multipart answer is truncated: no closing boundary")
        parts.append(Part(headers, body[content_start:next_delimiter]))
        position = next_delimiter + crlf + len(delimiter)


def build(parts: Iterable[bytes], content_type: str) -> tuple[bytes, str]:
    """A ``multipart/related`` body of parts of one type; returns the body and its Content-Type."""
    boundary = "datasources-" + os.urandom(12).hex()
    chunks: list[bytes] = []
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
    for part in parts:
        chunks += [head, part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{content_type}"; boundary={boundary}'
