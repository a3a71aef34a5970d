"""``multipart/related`` (RFC 2387): WADO-RS frames and bulk data, STOW-RS bodies, both ways.

Used by the gateway (frames out, STOW-RS in) and by the dicomweb source (frames in, STOW-RS out).

The parser checks the framing instead of trusting it: a body without its closing boundary is
refused (a truncated upload must not store a shorter instance).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from collections.abc import Callable, Iterable, Sequence

from .errors import DatasetError, DataSourcesError, PayloadTooLargeError
from .transfer import Frame, labelled

__all__ = ["Part", "build", "media_params", "parse", "release", "split_media_type"]


class Part:
    """One body part: its (lower-cased) headers and its bytes.

    ``content`` is ``bytes`` for a ``bytes`` body, and a zero-copy ``memoryview`` slice for an
    ``mmap`` body (the gateway's STOW spool on disk): release it (``content.release()``)
    before the map is closed."""

    __slots__ = ("content", "headers")

    def __init__(self, headers: dict[str, str], content: bytes | memoryview) -> None:
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
    """Parameters of a media type (``a=b; c="d;e"``), names lower-cased, quotes removed.

    One regular expression over the text (each answer's boundary is new, so there is nothing
    to remember between calls); linear in the text."""
    params: dict[str, str] = {}
    for match in _PARAM.finditer(text):
        name, has_value, quoted, plain = match.groups()
        name = name.strip().lower()
        if not name:
            continue
        if has_value is None:
            params[name] = ""
        elif quoted is not None:
            params[name] = _ESCAPED.sub(r"\1", quoted) if "\\" in quoted else quoted
        else:
            params[name] = plain.strip()
    return params


# a parameter: separators, a name up to '=' or ';', then a quoted string (backslash escapes, the
# closing quote optional at the end) or plain text up to ';'
_PARAM = re.compile(r'[ \t;]*([^=;]*)(=[ \t]*(?:"((?:[^"\\]|\\.|\\$)*)"?|([^;]*)))?', re.DOTALL)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def new_boundary() -> str:
    return "datasources-" + os.urandom(12).hex()


# RFC 2046 5.1.1: what a boundary may hold (and not end with a space), 1 to 70 characters
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


def _header_value(value: str, what: str, error: type[DataSourcesError]) -> bytes:
    """A header value as bytes; CR, LF or any control character would start a header of its own."""
    if not isinstance(value, str) or any(c < " " or c == "\x7f" for c in value):
        raise error(f"{what} {value!r} holds a line break or control character"[:300])
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise error(f"{what} {value!r} is not Latin-1 text"[:300]) from None


def build(
    parts: Sequence[tuple[bytes, str]] | Iterable[tuple[bytes, str]],
    boundary: str | None = None,
    *,
    error: type[DataSourcesError] = DatasetError,
) -> tuple[bytes, str]:
    """A body of ``(content, part content type)`` pairs; returns it and its boundary.

    A content type that would inject a header, a boundary outside RFC 2046's characters, or a
    part that holds its own delimiter is ``error`` (the caller's :class:`DatasetError` by
    default; pass ``MalformedResponseError`` where the parts come from a backend)."""
    if boundary is None:
        boundary = new_boundary()
    elif not (0 < len(boundary) <= 70 and set(boundary) <= _BCHARS and not boundary.endswith(" ")):
        raise error(f"multipart boundary {boundary!r} is not 1 to 70 of RFC 2046's characters"[:300])
    opening = b"--" + boundary.encode("latin-1")
    chunks: list[bytes] = []
    for index, (content, content_type) in enumerate(parts):
        if not isinstance(content, bytes | bytearray | memoryview):
            raise error(f"multipart part {index}: content is bytes, not {type(content).__name__}")
        if _holds(content, b"\n" + opening):  # the parser would end the part there
            raise error(f"multipart part {index} holds its own boundary {boundary!r}")
        header = _header_value(content_type, f"multipart part {index}: content type", error)
        chunks += [opening + b"\r\nContent-Type: " + header + b"\r\n\r\n", content, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("latin-1"))
    return b"".join(chunks), boundary  # one copy of the contents, whatever their type


def _holds(content: bytes | bytearray | memoryview, needle: bytes) -> bool:
    """``needle in content`` without copying a memoryview (``in`` on one compares single items)."""
    if isinstance(content, memoryview):
        return re.search(re.escape(needle), content) is not None
    return needle in content


def parse(
    body: bytes | mmap.mmap,
    content_type: str,
    *,
    error: type[DataSourcesError] = DatasetError,
    max_parts: int | None = None,
    max_header_bytes: int = 16384,
) -> list[Part]:
    """The parts of a ``multipart/related`` body; ``error`` (a request's :class:`DatasetError` by
    default, a server answer's ``MalformedResponseError``) if it is not well formed.

    ``body`` may be an ``mmap`` of a spooled file (the gateway's large STOW bodies): its parts'
    contents are then ``memoryview`` slices of it, nothing copied. More than
    ``max_parts`` parts, or a part's headers over ``max_header_bytes``, are
    :class:`PayloadTooLargeError` (a configured bound, not a malformed body)."""
    media, params = split_media_type(content_type)
    if not media.startswith("multipart/"):
        raise error(f"expected a multipart/related body, got {media or 'no Content-Type'}")
    boundary = params.get("boundary")
    if not boundary:
        raise error("the multipart Content-Type has no boundary")
    try:
        delimiter = b"--" + boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise error(f"the multipart boundary {boundary[:80]!r} is not Latin-1 text") from None
    start = body.find(delimiter)
    if start < 0:
        raise error("the multipart body never contains its boundary")
    parts: list[Part] = []
    if not isinstance(body, mmap.mmap):
        _split(body, delimiter, start, parts, body.__getitem__, error, max_parts, max_header_bytes)
        return parts
    view = memoryview(body)
    try:
        _split(body, delimiter, start, parts, view.__getitem__, error, max_parts, max_header_bytes)
    except BaseException:
        release(parts)  # a refused body leaves no view that would keep the map open
        raise
    finally:
        view.release()
    return parts


def release(parts: Iterable[Part]) -> None:
    """Release the parts' ``memoryview`` contents (an ``mmap`` cannot close while one lives)."""
    for part in parts:
        if isinstance(part.content, memoryview):
            with contextlib.suppress(BufferError):  # exported and held: it dies with its holder
                part.content.release()


def _split(
    body: bytes | mmap.mmap,
    delimiter: bytes,
    start: int,
    parts: list[Part],
    content_of: Callable[[slice], bytes | memoryview],
    error: type[DataSourcesError],
    max_parts: int | None,
    max_header_bytes: int,
) -> None:
    """Append the parts after the first delimiter (at ``start``) to ``parts``."""
    position = start + len(delimiter)
    finder = _Delimiters(body, delimiter)
    while True:
        if body[position : position + 2] == b"--":
            return
        if body[position : position + 2] == b"\r\n":
            position += 2
        elif body[position : position + 1] == b"\n":
            position += 1
        else:
            raise error("the multipart body has text after a boundary")
        if max_parts is not None and len(parts) >= max_parts:
            raise PayloadTooLargeError(f"the multipart body has more than {max_parts} parts, the most taken")
        headers: dict[str, str] = {}
        # every search stops at this part's delimiter: linear in the body, whatever the parts
        end, size = finder.next(position)
        if end < 0:
            raise error("the multipart body is truncated: no closing boundary")
        if body[position : position + 2] == b"\r\n":  # a part without headers
            content_start = position + 2
        elif body[position : position + 1] == b"\n":
            content_start = position + 1
        else:
            crlf = body.find(b"\r\n\r\n", position, end + 2)
            lf = body.find(b"\n\n", position, crlf + 2 if crlf >= 0 else end + 1)
            if crlf < 0 and lf < 0:
                raise error("the multipart body is truncated: a part has no end of headers")
            header_end, separator = (lf, 2) if lf >= 0 else (crlf, 4)
            if header_end - position > max_header_bytes:
                raise PayloadTooLargeError(f"a part's headers are over {max_header_bytes} bytes")
            for line in body[position:header_end].decode("latin-1").splitlines():
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            content_start = header_end + separator
        if content_start > end:  # the blank line ending the headers was the delimiter's own line break
            end, size = finder.next(content_start)
            if end < 0:
                raise error("the multipart body is truncated: no closing boundary")
        parts.append(Part(headers, content_of(slice(content_start, end))))
        position = end + size


class _Delimiters:
    """The next ``CRLF--boundary`` at or after a position, else the next ``LF--boundary`` (some
    writers end lines with LF alone). Positions only grow, so each search resumes where the last
    one's answer was used: one pass over the body, however many parts (a search from every part
    for a kind of delimiter the body lacks would scan to its end each time)."""

    __slots__ = ("body", "crlf", "crlf_at", "lf", "lf_at")

    def __init__(self, body: bytes | mmap.mmap, delimiter: bytes) -> None:
        self.body = body
        self.crlf, self.lf = b"\r\n" + delimiter, b"\n" + delimiter
        self.crlf_at = self.lf_at = -2  # -2: not searched yet; -1: none left in the body

    def next(self, position: int) -> tuple[int, int]:
        if self.crlf_at != -1 and self.crlf_at < position:
            self.crlf_at = self.body.find(self.crlf, position)
        if self.crlf_at >= 0:
            return self.crlf_at, len(self.crlf)
        if self.lf_at != -1 and self.lf_at < position:
            self.lf_at = self.body.find(self.lf, position)
        return self.lf_at, len(self.lf)
