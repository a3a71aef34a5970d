"""STOW-RS for the gateway: parts in, ``store.dicom`` called once, the standard answer out.

The answer is the DICOM JSON dataset PS3.18 10.5.3 describes: a ``ReferencedSOPSequence``
for stored instances (with a ``WarningReason`` when the source warned) and a
``FailedSOPSequence`` with a ``FailureReason`` code for the others. 200 when all were
stored, 202 when some failed or warned, 409 when none was stored.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import multipart
from ..errors import DatasetError
from ..results import InstanceOutcome
from .negotiation import dicom_json
from .state import source_context

if TYPE_CHECKING:
    from ..interface import DataSource

__all__ = ["failure_code", "read_body", "store_instances", "store_study_instances", "stow_response"]

PROCESSING_FAILURE = 0x0110
DUPLICATE = 0x0111
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
COERCED = 0xB000
DISCARDED = 0xB006
WARNING_DOES_NOT_MATCH = 0xB007


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"the body is {length} bytes; this gateway takes at most {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise HTTPException(413, f"the body is over {limit} bytes, the most this gateway takes")
        chunks.append(chunk)
    return b"".join(chunks)


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

    def __init__(self, data: bytes) -> None:
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(
                io.BytesIO(part.content),
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
    body = await read_body(request, gateway.max_stow_bytes)
    parts = multipart.parse(body, content_type)
    if not parts:
        raise DatasetError("the STOW request holds no part")
    status, answer, stored_studies = await run_in_threadpool(stow_response, data_source, parts, study, root)
    if stored_studies:
        await run_in_threadpool(gateway.forget, name, data_source, stored_studies)
    return dicom_json(answer, status)
