"""Content negotiation of the gateway: what an Accept header allows, and how an answer is labelled.

The gateway does not transcode: frames are sent as stored, labelled with their transfer
syntax, and an Accept header that allows none of what is stored is a 406.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import multipart
from .frames import EXPLICIT_LE

__all__ = ["DICOM_JSON", "Negotiated", "accepts", "dicom_json", "image_type", "negotiate", "part_type", "require_json"]

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


class Negotiated:
    __slots__ = ("multipart", "type")

    def __init__(self, multipart: bool, media_type: str) -> None:
        self.multipart = multipart
        self.type = media_type  # what the parts (or the single body) are labelled


_ANY = frozenset({"*", "*/*"})


def negotiate(request: Request, media: str, ts: str | None, count: int) -> Negotiated:
    """Multipart or one part, and the label, for frames / bulk data of ``media`` stored as ``ts``.

    ``type="application/octet-stream"`` takes native pixels; with ``transfer-syntax=*`` (what
    OHIF sends) or the stored transfer syntax it also takes compressed ones, labelled with
    their transfer syntax, as PACS answer it. Without either it means uncompressed only, and
    compressed frames are a 406: the gateway does not transcode.
    """
    header = request.headers.get("accept")
    if not header:
        return Negotiated(True, media)
    native = media == "application/octet-stream" and ts in (None, EXPLICIT_LE)
    for item in header.split(","):
        kind, params = multipart.split_media_type(item)
        if kind in _ANY or kind == "multipart/*":
            return Negotiated(True, media)
        if kind == "multipart/related":
            several, part = True, params.get("type", "application/octet-stream").lower()
        elif count == 1:
            several, part = False, kind
        else:
            continue
        wanted_ts = params.get("transfer-syntax")
        if part in _ANY:
            return Negotiated(several, media)
        if part == "application/octet-stream" and (native or wanted_ts == "*" or (ts and wanted_ts == ts)):
            return Negotiated(several, "application/octet-stream")
        if part == media and (wanted_ts in (None, "*") or wanted_ts == ts):
            return Negotiated(several, media)
    raise HTTPException(
        406,
        f"the frames are {media}" + (f" (transfer syntax {ts})" if ts else "") + "; ask for "
        f'multipart/related; type="{media}"'
        + ("" if native else ' or type="application/octet-stream"; transfer-syntax=*'),
    )


def part_type(media: str, ts: str | None) -> str:
    """A part's Content-Type: ``media`` with its transfer syntax when it has one."""
    return f"{media}; transfer-syntax={ts}" if ts else media
