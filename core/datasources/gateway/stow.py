"""STOW-RS for the gateway: parts in, ``store.dicom`` called once, the standard answer out.

The answer is the DICOM JSON dataset PS3.18 10.5.3 describes: a ``ReferencedSOPSequence``
for stored instances (with a ``WarningReason`` when the source warned) and a
``FailedSOPSequence`` with a ``FailureReason`` code for the others. 200 when all were
stored, 202 when some failed or warned, 409 when none was stored.
"""

from __future__ import annotations

import gc
import logging
import mmap
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import multipart
from ..buffers import reader
from ..errors import DatasetError, NotSupportedError
from ..results import InstanceOutcome
from ..uploads import store_refusal
from .negotiation import dicom_json
from .state import source_context

if TYPE_CHECKING:
    from ..interface import DataSource

__all__ = [
    "failure_code",
    "read_body",
    "refusal",
    "spool_body",
    "spooled_parts",
    "store_instances",
    "store_study_instances",
    "stow_response",
]

PROCESSING_FAILURE = 0x0110
DUPLICATE = 0x0111
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
COERCED = 0xB000
DISCARDED = 0xB006
WARNING_DOES_NOT_MATCH = 0xB007

log = logging.getLogger(__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    spool = await spool_body(request, limit, spool_bytes=limit + 1)
    with spool:
        spool.seek(0)
        return spool.read()


async def spool_body(request: Request, limit: int, *, spool_bytes: int) -> IO[bytes]:
    """The request body in a temporary file that stays in memory up to ``spool_bytes`` and goes
    to disk past it (before the chunk that would pass it is written, so memory never holds
    more); refused with 413 as soon as it passes ``limit`` bytes. Disk writes run in the thread
    pool, so a large upload never blocks the event loop."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"the body is {length} bytes; this gateway takes at most {limit}")
    spool = tempfile.SpooledTemporaryFile(max_size=spool_bytes, prefix="datasources-stow-")  # noqa: SIM115
    try:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise HTTPException(413, f"the body is over {limit} bytes, the most this gateway takes")
            if not getattr(spool, "_rolled", False) and total > spool_bytes:
                await run_in_threadpool(spool.rollover)
            if getattr(spool, "_rolled", False):
                await run_in_threadpool(spool.write, chunk)
            else:
                spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    return spool  # type: ignore[return-value]


@contextmanager
def spooled_parts(spool: IO[bytes], content_type: str, max_parts: int) -> Iterator[list[multipart.Part]]:
    """The parts of a spooled body while the block runs. Once the body went to disk they are
    ``memoryview`` slices of an ``mmap`` of the file (nothing copied into memory); on leaving,
    every view is released and the map closed. Blocking: run it in the thread pool."""
    if not getattr(spool, "_rolled", False):
        spool.seek(0)
        yield multipart.parse(spool.read(), content_type, max_parts=max_parts)
        return
    spool.flush()
    if spool.seek(0, os.SEEK_END) == 0:
        yield multipart.parse(b"", content_type, max_parts=max_parts)
        return
    view = mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ)
    parts: list[multipart.Part] = []
    try:
        parts = multipart.parse(view, content_type, max_parts=max_parts)
        yield parts
    finally:
        multipart.release(parts)
        _close_map(view)


def _close_map(view: mmap.mmap) -> None:
    """Close the map; a view that something still holds (a source that kept a part, a traceback's
    frame) makes ``close`` raise BufferError: the map is then unmapped when that view dies."""
    try:
        view.close()
    except BufferError:
        gc.collect()  # views held only by reference cycles (tracebacks) go now
        try:
            view.close()
        except BufferError:
            log.warning("a STOW part is still referenced after the store call; its spool is unmapped later")


def refusal(data_source: DataSource) -> str | None:
    """Why ``data_source`` cannot store at all, known before reading a body; else None
    (:func:`datasources.uploads.store_refusal`: read-only, or ``dicomUploadEnabled: false``)."""
    return store_refusal(data_source)


def failure_code(reason: str | None) -> int:
    """A FailureReason code for a source's refusal text."""
    text = (reason or "").lower()
    if "duplicate" in text or "already stored" in text:
        return DUPLICATE
    if "sop class" in text and "not supported" in text:
        return SOP_CLASS_NOT_SUPPORTED
    if "out of resources" in text or "no space" in text:
        return OUT_OF_RESOURCES
    if "does not match" in text:
        return DOES_NOT_MATCH
    if any(
        word in text for word in ("not dicom", "cannot understand", "not a valid uid", "is missing", "cannot encode")
    ):
        return CANNOT_UNDERSTAND
    return PROCESSING_FAILURE


def _warning_code(reason: str | None) -> int:
    text = (reason or "").lower()
    if "discarded" in text:
        return DISCARDED
    if "does not match" in text:
        return WARNING_DOES_NOT_MATCH
    return COERCED


class _Item:
    __slots__ = ("data", "failure", "reason", "series", "sop", "sop_class", "study")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.sop: str | None = None
        self.sop_class: str | None = None
        self.study: str | None = None
        self.series: str | None = None
        self.failure: int | None = None
        self.reason: str | None = None


def _inspect(part: multipart.Part, study: str | None) -> _Item:
    item = _Item(part.content)
    kind = multipart.split_media_type(part.content_type)[0] if part.content_type else "application/dicom"
    if kind != "application/dicom":
        item.failure, item.reason = CANNOT_UNDERSTAND, f"a {kind} part is not a DICOM instance"
        return item
    from pydicom import dcmread

    try:
        with warnings.catch_warnings(), reader(part.content) as fp:  # the header only, nothing copied
            warnings.simplefilter("ignore")
            ds = dcmread(
                fp,
                stop_before_pixels=True,
                force=True,
                specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"],
            )
            item.sop = str(ds.get("SOPInstanceUID") or "") or None
            item.sop_class = str(ds.get("SOPClassUID") or "") or None
            item.study = str(ds.get("StudyInstanceUID") or "") or None
            item.series = str(ds.get("SeriesInstanceUID") or "") or None
    except Exception as exc:
        item.failure, item.reason = CANNOT_UNDERSTAND, f"not DICOM: {type(exc).__name__}"
        return item
    if not item.sop:
        item.failure, item.reason = CANNOT_UNDERSTAND, "no SOPInstanceUID"
    elif study is not None and item.study != study:
        item.failure, item.reason = PROCESSING_FAILURE, f"StudyInstanceUID {item.study} is not {study}"
    return item


def _ui(value: str | None) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def stow_response(
    data_source: DataSource, parts: Sequence[multipart.Part], study: str | None, root: str
) -> tuple[int, dict[str, Any], list[str]]:
    """Store the parts; ``(status, DICOM JSON answer, UIDs of the studies that changed)``."""
    items = [_inspect(part, study) for part in parts]
    sendable = [item for item in items if item.failure is None]
    if sendable:
        result = data_source.store.dicom([item.data for item in sendable])
        outcomes: Sequence[InstanceOutcome] = result.outcomes
        by_sop = {o.sop_instance_uid: o for o in outcomes if o.sop_instance_uid}
        for position, item in enumerate(sendable):
            outcome = by_sop.get(item.sop)
            if outcome is None and len(outcomes) == len(sendable):
                outcome = outcomes[position]
            if outcome is None:
                item.failure, item.reason = PROCESSING_FAILURE, "the source did not report this instance"
            elif outcome.status == "failed":
                item.failure, item.reason = failure_code(outcome.reason), outcome.reason
            elif outcome.status == "warning":
                item.reason = outcome.reason or "warning"
            item.sop_class = item.sop_class or (outcome.sop_class_uid if outcome else None)
    referenced, failed, studies = [], [], []
    for item in items:
        if item.failure is not None:
            failed.append(
                {
                    "00081150": _ui(item.sop_class),
                    "00081155": _ui(item.sop),
                    "00081197": {"vr": "US", "Value": [item.failure]},
                }
            )
            continue
        url = f"{root}/studies/{item.study}/series/{item.series}/instances/{item.sop}"
        entry = {"00081150": _ui(item.sop_class), "00081155": _ui(item.sop), "00081190": {"vr": "UR", "Value": [url]}}
        if item.reason:
            entry["00081196"] = {"vr": "US", "Value": [_warning_code(item.reason)]}
        referenced.append(entry)
        if item.study and item.study not in studies:
            studies.append(item.study)
    answer: dict[str, Any] = {}
    target = study or (studies[0] if len(studies) == 1 else None)
    if target:
        answer["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{target}"]}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        answer["00081199"] = {"vr": "SQ", "Value": referenced}
    warned = any("00081196" in entry for entry in referenced)
    status = 409 if not referenced else 202 if failed or warned else 200
    return status, answer, studies


def _store_spooled(
    data_source: DataSource, spool: IO[bytes], content_type: str, max_parts: int, study: str | None, root: str
) -> tuple[int, dict[str, Any], list[str]]:
    with spooled_parts(spool, content_type, max_parts) as parts:
        if not parts:
            raise DatasetError("the STOW request holds no part")
        return stow_response(data_source, parts, study, root)


async def store_instances(request: Request) -> Response:
    """``POST /studies``: store the parts, whatever study they belong to."""
    return await _stow(request, None)


async def store_study_instances(request: Request) -> Response:
    """``POST /studies/{study}``: store the parts; a part of another study is refused (0x0110)."""
    return await _stow(request, request.path_params["study"])


async def _stow(request: Request, study: str | None) -> Response:
    gateway, name, data_source, root = source_context(request)
    content_type = request.headers.get("content-type", "")
    kind, params = multipart.split_media_type(content_type)
    if kind != "multipart/related":
        raise HTTPException(415, 'STOW-RS takes multipart/related; type="application/dicom"')
    part_type = params.get("type", "application/dicom").lower()
    if part_type != "application/dicom":
        raise HTTPException(415, f"only application/dicom parts can be stored here, not {part_type}")
    reason = refusal(data_source)
    if reason is not None:  # before the body is read: a read-only source costs a client nothing
        raise NotSupportedError("store.dicom", reason=reason)
    spool = await spool_body(request, gateway.max_stow_bytes, spool_bytes=gateway.stow_spool_bytes)
    try:  # the spool (and its map) stays open until the store call returned
        status, answer, stored_studies = await run_in_threadpool(
            _store_spooled, data_source, spool, content_type, gateway.max_stow_parts, study, root
        )
    finally:
        spool.close()
    if stored_studies:
        await run_in_threadpool(gateway.forget, name, data_source, stored_studies)
    return dicom_json(answer, status)
