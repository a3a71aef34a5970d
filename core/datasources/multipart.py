"""``multipart/related`` (RFC 2387): WADO-RS frames and bulk data, STOW-RS bodies, both ways.

Used by the gateway (frames out, STOW-RS in) and by the dicomweb source (frames in, STOW-RS out).

The parser checks the framing instead of trusting it: a body without its closing boundary is
refused (a truncated upload must not store a shorter instance).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from .errors import DatasetError, DataSourcesError
from .transfer import Frame, labelled

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

    @property
    def transfer_syntax(self) -> str | None:
        """What the part says its bytes are (PS3.18 8.7.3.5): its ``transfer-syntax=`` parameter,
        else Explicit VR Little Endian for ``application/octet-stream`` (the standard's default);
        None for a compressed media type that does not name its transfer syntax."""
        media, params = split_media_type(self.content_type)
        given = params.get("transfer-syntax")
        if given and given != "*":
            return given
        return "1.2.840.10008.1.2.1" if media == "application/octet-stream" else None

    def frame(self) -> Frame:
        """The part's bytes, labelled with its transfer syntax (native ones as Explicit VR LE)."""
        return labelled(self.content, self.transfer_syntax)

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


def parse(body: bytes, content_type: str, *, error: type[DataSourcesError] = DatasetError) -> list[Part]:
    """The parts of a ``multipart/related`` body; ``error`` (a request's :class:`DatasetError` by
    default, a server answer's ``MalformedResponseError``) if it is not well formed."""
    media, params = split_media_type(content_type)
    if not media.startswith("multipart/"):
        raise error(f"expected a multipart/related body, got {media or 'no Content-Type'}")
    boundary = params.get("boundary")
    if not boundary:
        raise error("the multipart Content-Type has no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise error("the multipart body never contains its boundary")
    parts: list[Part] = []
    position = start + len(delimiter)
    while True:
        if body[position : position + 2] == b"--":
            return parts
        if body[position : position + 2] == b"\r\n":
            position += 2
        elif body[position : position + 1] == b"\n":
            position += 1
        else:
            raise error("the multipart body has text after a boundary")
        headers: dict[str, str] = {}
        if body[position : position + 2] == b"\r\n":  # a part without headers
            content_start = position + 2
        elif body[position : position + 1] == b"\n":
            content_start = position + 1
        else:
            ends = [(i, size) for i, size in ((body.find(b"\r\n\r\n", position), 4), (body.find(b"\n\n", position), 2))]
            found = [end for end in ends if end[0] >= 0]
            if not found:
                raise error("the multipart body is truncated: a part has no end of headers")
            header_end, separator = min(found)
            for line in body[position:header_end].decode("latin-1").splitlines():
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            content_start = header_end + separator
        next_delimiter, crlf = body.find(b"\r\n" + delimiter, content_start), 2
        if next_delimiter < 0:
            next_delimiter, crlf = body.find(b"\n" + delimiter, content_start), 1
        if next_delimiter < 0:
            raise error("the multipart body is truncated: no closing boundary")
        parts.append(Part(headers, body[content_start:next_delimiter]))
        position = next_delimiter + crlf + len(delimiter)
