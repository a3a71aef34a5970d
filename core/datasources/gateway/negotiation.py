"""Content negotiation of the gateway: what an Accept header allows, and how an answer is labelled.

Frames and bulk data follow PS3.18 8.7.3 (``q`` values honoured). For pixel data stored in
transfer syntax *S*:

- ``multipart/related; type="application/octet-stream"; transfer-syntax=*`` (what OHIF sends),
  ``*/*`` or no ``Accept``: the frames as stored, each part labelled with *S*;
- ``type="application/octet-stream"`` without a transfer syntax, or with Explicit VR Little
  Endian: native pixels: as stored when *S* is native, else decoded (when a decoder for *S* is
  installed, :mod:`datasources.transcode`);
- ``type="image/jp2"`` (``image/jpeg``, ``image/jls``, ``image/jphc``, ``image/dicom-rle``...),
  or that single-part type for one frame: as stored when *S* is of that media type;
- anything else: :class:`NotAcceptable` (a 406 naming what can be served).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import multipart
from ..transfer import EXPLICIT_LE, IMPLICIT_LE, NATIVE, media_type_of

__all__ = [
    "DICOM_JSON",
    "Choice",
    "NotAcceptable",
    "accepts",
    "dicom_json",
    "image_type",
    "negotiate",
    "offers",
    "require_json",
]

DICOM_JSON = "application/dicom+json"


def accepts(request: Request, *media: str) -> bool:
    """Whether the Accept header (or its absence) allows one of ``media``."""
    header = request.headers.get("accept")
    if not header:
        return True
    for item in header.split(","):
        kind = item.split(";", 1)[0].strip().lower()
        if kind in ("*/*", "application/*") or kind in media:
            return True
    return False


def require_json(request: Request) -> None:
    """A 406 unless the client takes DICOM JSON."""
    if not accepts(request, DICOM_JSON, "application/json"):
        raise HTTPException(406, f"this resource is {DICOM_JSON}; the Accept header allows none of it")


def dicom_json(data: Any, status: int = 200) -> Response:
    """``data`` as an ``application/dicom+json`` answer."""
    return Response(orjson.dumps(data), status_code=status, media_type=DICOM_JSON)


def image_type(request: Request) -> str:
    """The rendered image type the client asks for: PNG unless it names JPEG first."""
    header = (request.headers.get("accept") or "").lower()
    for item in header.split(","):
        kind = item.split(";", 1)[0].strip()
        if kind in ("image/png", "image/jpeg"):
            return kind
        if kind in ("*/*", "image/*"):
            return "image/png"
    if header and "image/png" not in header:
        raise HTTPException(406, "rendered images are image/png or image/jpeg")
    return "image/png"


_ANY = frozenset({"*", "*/*"})
_OCTET = "application/octet-stream"


class Choice:
    """What to send: several parts or one body, the media type and transfer syntax of the bytes,
    and whether they must be decoded to native first."""

    __slots__ = ("media_type", "multipart", "transcode", "transfer_syntax")

    def __init__(self, multipart: bool, media_type: str, transfer_syntax: str | None, transcode: bool = False) -> None:
        self.multipart = multipart
        self.media_type = media_type
        self.transfer_syntax = transfer_syntax
        self.transcode = transcode

    @property
    def part_type(self) -> str:
        """The Content-Type of each part (or of the single body)."""
        ts = self.transfer_syntax
        return f"{self.media_type}; transfer-syntax={ts}" if ts else self.media_type

    def content_type(self, boundary: str) -> str:
        if not self.multipart:
            return self.part_type
        value = f'multipart/related; type="{self.media_type}"; boundary={boundary}'
        return value + (f"; transfer-syntax={self.transfer_syntax}" if self.transfer_syntax else "")

    def __repr__(self) -> str:
        kind = "multipart" if self.multipart else "single"
        return f"Choice({kind}, {self.part_type!r}, transcode={self.transcode})"


class NotAcceptable(Exception):
    """Nothing in the Accept header can be served; ``offers`` is what could be."""

    def __init__(self, message: str, offers: Sequence[str]) -> None:
        super().__init__(message)
        self.offers = list(offers)


def offers(stored: str | None, can_transcode: bool) -> list[str]:
    """The Accept values the gateway can honour for pixel data stored as ``stored``."""
    media = media_type_of(stored)
    out = [f'multipart/related; type="{_OCTET}"; transfer-syntax=*']
    if stored is not None and stored not in NATIVE:
        out.append(f'multipart/related; type="{media}"; transfer-syntax={stored}')
        out.append(f'multipart/related; type="{_OCTET}"; transfer-syntax={stored}')
    if stored is None or stored in NATIVE or can_transcode:
        out.append(f'multipart/related; type="{_OCTET}"; transfer-syntax={EXPLICIT_LE}')
    return out


def _items(header: str) -> list[tuple[str, dict[str, str]]]:
    """Accept items, highest ``q`` first (stable), ``q=0`` ones left out."""
    ranked = []
    for position, item in enumerate(header.split(",")):
        if not item.strip():
            continue
        kind, params = multipart.split_media_type(item)
        try:
            q = float(params.pop("q", "1") or 1)
        except ValueError:
            q = 1.0
        if q > 0:
            ranked.append((-q, position, kind, params))
    ranked.sort()
    return [(kind, params) for _, _, kind, params in ranked]


def negotiate(header: str | None, stored: str | None, count: int, *, can_transcode: bool = False) -> Choice:
    """The :class:`Choice` for ``count`` frames stored as ``stored`` (None: unknown, sent as is).

    A viewer sends the same ``Accept`` for every frame: the choice for a header of ordinary
    length is worked out once (a :class:`Choice` is never changed once made)."""
    if header is not None and len(header) <= 512:
        return _negotiate_cached(header, stored, count == 1, can_transcode)
    return _negotiate(header, stored, count, can_transcode)


@functools.lru_cache(maxsize=256)
def _negotiate_cached(header: str, stored: str | None, single: bool, can_transcode: bool) -> Choice:
    return _negotiate(header, stored, 1 if single else 2, can_transcode)


def _negotiate(header: str | None, stored: str | None, count: int, can_transcode: bool) -> Choice:
    media = media_type_of(stored)
    native = stored is None or stored in NATIVE
    label = EXPLICIT_LE if stored in NATIVE else stored
    as_stored = lambda several, kind=media: Choice(several, kind, label)  # noqa: E731
    if not header or not header.strip():
        return as_stored(True)
    for kind, params in _items(header):
        if kind in _ANY or kind == "multipart/*":
            return as_stored(True)
        if kind == "multipart/related":
            several, part = True, params.get("type", _OCTET).lower()
        elif count == 1:
            several, part = False, kind
        else:
            continue  # several frames need a multipart answer
        wanted = params.get("transfer-syntax")
        if part in _ANY or part == "image/*":
            return as_stored(several)
        if part == _OCTET:
            if wanted == "*" or (wanted is not None and wanted == stored):
                return as_stored(several, _OCTET)
            if wanted in (None, EXPLICIT_LE, IMPLICIT_LE):
                if native:
                    return Choice(several, _OCTET, EXPLICIT_LE if stored else None)
                if can_transcode:
                    return Choice(several, _OCTET, EXPLICIT_LE, transcode=True)
            continue
        if not native and part == media and (wanted in (None, "*") or wanted == stored):
            return as_stored(several)
    can = offers(stored, can_transcode)
    raise NotAcceptable(
        f"the frames are stored as {media}"
        + (f" (transfer syntax {stored})" if stored else "")
        + ("" if native or can_transcode else "; no decoder for it is installed")
        + "; acceptable: "
        + ", ".join(can),
        can,
    )
