"""STOW-RS: pydicom Datasets, bytes or file paths sent in batches, and what the server said of each.

Inputs are read (files), encoded (Datasets) and joined into a body one batch at a time, and
bytes-like inputs (a ``memoryview`` of the gateway's spool) are not copied before: memory
holds one batch, whatever the number of instances.

The answer's ``ReferencedSOPSequence`` (stored, possibly with a ``WarningReason``) and
``FailedSOPSequence`` (refused, with a ``FailureReason``) are matched back to the inputs by
SOP Instance UID. An input that cannot even be read is reported as failed with its origin;
it never stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasources import multipart
from datasources.buffers import reader
from datasources.errors import BackendError, HTTPError
from datasources.results import InstanceOutcome, StoreResult

from ..part10 import to_part10
from .client import DicomWebClient

__all__ = ["store_instances"]

Progress = Callable[[int, int], None]

_WARNING_REASONS = {0xB000: "coercion of data elements", 0xB007: "data set does not match SOP class",
                    0xB006: "elements discarded"}  # fmt: skip
_FAILURE_REASONS = {0xA700: "out of resources", 0xA900: "data set does not match SOP class",
                    0xC000: "cannot understand", 0x0110: "processing failure", 0x0111: "duplicate SOP instance",
                    0x0122: "SOP class not supported", 0x0124: "not authorized"}  # fmt: skip


@dataclass
class _Item:
    origin: str
    source: Any  # what to send: bytes-like (never copied up front), a path or a Dataset, read per batch
    sop_instance_uid: str | None
    sop_class_uid: str | None
    error: str | None = None

    def data(self) -> bytes | bytearray | memoryview:
        """The Part-10 bytes to send, read now (when this item's batch is built)."""
        if isinstance(self.source, str | os.PathLike):
            return Path(self.source).read_bytes()
        if hasattr(self.source, "save_as"):
            return to_part10(self.source)
        return self.source


def _uids(source: Any) -> tuple[str | None, str | None]:
    """The SOP Instance and Class UIDs from the header alone (the pixels are not read or copied)."""
    from pydicom import dcmread

    tags = ["SOPInstanceUID", "SOPClassUID"]
    if isinstance(source, str | os.PathLike):
        ds = dcmread(source, stop_before_pixels=True, specific_tags=tags)
    else:
        with reader(source) as fp:
            ds = dcmread(fp, stop_before_pixels=True, specific_tags=tags)
    return getattr(ds, "SOPInstanceUID", None), getattr(ds, "SOPClassUID", None)


def _prepare(index: int, item: Any) -> _Item:
    if isinstance(item, str | os.PathLike):
        origin = str(item)
        try:
            with open(item, "rb"):
                pass
        except OSError as exc:
            return _Item(origin, None, None, None, f"cannot read the file: {exc.strerror or exc}")
    elif isinstance(item, bytes | bytearray | memoryview):
        origin = f"input {index}"
    elif hasattr(item, "SOPInstanceUID") and hasattr(item, "save_as"):
        sop, sop_class = getattr(item, "SOPInstanceUID", None), getattr(item, "SOPClassUID", None)
        if not sop:
            return _Item(f"dataset {index}", None, None, sop_class, "no SOPInstanceUID")
        return _Item(f"dataset {index}", item, str(sop), str(sop_class) if sop_class else None)
    else:
        return _Item(f"input {index}", None, None, None, f"not a Dataset, bytes or a path: {type(item).__name__}")
    try:
        sop, sop_class = _uids(item)
    except OSError as exc:
        return _Item(origin, None, None, None, f"cannot read the file: {exc.strerror or exc}")
    except Exception as exc:
        return _Item(origin, None, None, None, f"not DICOM: {type(exc).__name__}: {exc}")
    if not sop:
        return _Item(origin, None, None, sop_class, "no SOPInstanceUID")
    return _Item(origin, item, sop, sop_class)


def _read_batch(batch: list[_Item]) -> tuple[list[_Item], list[tuple[Any, str]], list[InstanceOutcome]]:
    """The batch's items that could be read now, their contents, and outcomes for the others."""
    kept, contents, failed = [], [], []
    for item in batch:
        try:
            data = item.data()
        except OSError as exc:
            reason = f"cannot read the file: {exc.strerror or exc}"
        except Exception as exc:
            reason = f"cannot encode: {exc}"
        else:
            kept.append(item)
            contents.append((data, "application/dicom"))
            continue
        failed.append(InstanceOutcome("failed", item.sop_instance_uid, item.sop_class_uid, reason, origin=item.origin))
    return kept, contents, failed


def _value(element: Mapping[str, Any] | None) -> Any:
    values = (element or {}).get("Value") or []
    return values[0] if values else None


def _outcomes(batch: list[_Item], answer: Mapping[str, Any]) -> list[InstanceOutcome]:
    stored: dict[str, tuple[str | None, str | None]] = {}
    for ref in (answer.get("00081199") or {}).get("Value") or []:
        sop = _value(ref.get("00081155"))
        warning = _value(ref.get("00081196"))
        reason = _WARNING_REASONS.get(warning, f"warning 0x{warning:04X}") if isinstance(warning, int) else None
        stored[sop] = (reason, _value(ref.get("00081190")))
    failed: dict[str, str] = {}
    for ref in (answer.get("00081198") or {}).get("Value") or []:
        code = _value(ref.get("00081197"))
        failed[_value(ref.get("00081155"))] = (
            _FAILURE_REASONS.get(code, f"failure 0x{code:04X}") if isinstance(code, int) else "refused"
        )
    out = []
    for item in batch:
        sop = item.sop_instance_uid
        if sop in failed:
            out.append(InstanceOutcome("failed", sop, item.sop_class_uid, failed[sop], origin=item.origin))
        elif sop in stored:
            reason, url = stored[sop]
            status = "warning" if reason else "stored"
            out.append(InstanceOutcome(status, sop, item.sop_class_uid, reason, url, item.origin))
        else:
            out.append(
                InstanceOutcome("failed", sop, item.sop_class_uid, "not in the server's answer", origin=item.origin)
            )
    return out


def store_instances(
    client: DicomWebClient,
    items: Iterable[Any],
    *,
    study_instance_uid: str | None = None,
    batch_size: int = 50,
    progress: Progress | None = None,
) -> StoreResult:
    """Send the instances; a refused batch is reported per instance, a transport failure raises."""
    if isinstance(items, str | os.PathLike | bytes | bytearray | memoryview) or hasattr(items, "SOPInstanceUID"):
        items = [items]
    prepared = [_prepare(i, item) for i, item in enumerate(items)]
    total = len(prepared)
    outcomes: list[InstanceOutcome] = [
        InstanceOutcome("failed", p.sop_instance_uid, p.sop_class_uid, p.error, origin=p.origin)
        for p in prepared
        if p.error
    ]
    done = len(outcomes)
    if progress and done:
        progress(done, total)
    sendable = [p for p in prepared if not p.error]
    url = f"{client.config.stow_root}/studies" + (f"/{study_instance_uid}" if study_instance_uid else "")
    for start in range(0, len(sendable), max(1, batch_size)):
        # each batch's data is read (files, encodings) when it is sent: memory holds one batch
        batch, contents, unreadable = _read_batch(sendable[start : start + batch_size])
        outcomes += unreadable
        if not batch:
            done += len(unreadable)
            if progress:
                progress(done, total)
            continue
        body, boundary = multipart.build(contents)
        del contents  # the body holds the batch now
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        try:
            response = client.request(
                "POST", url, accept="application/dicom+json", data=body, content_type=content_type,
                ok=(200, 202, 409, 400),
            )  # fmt: skip
        except HTTPError as exc:
            if exc.status in (401, 403):
                raise
            outcomes += [
                InstanceOutcome("failed", p.sop_instance_uid, p.sop_class_uid, str(exc), origin=p.origin) for p in batch
            ]
        else:
            import orjson

            try:
                answer = orjson.loads(response.content) if response.content.strip() else {}
            except orjson.JSONDecodeError:
                answer = {}
            if isinstance(answer, list):
                answer = answer[0] if answer else {}
            if not isinstance(answer, Mapping):
                raise BackendError(f"{client.name}: STOW answer is not a DICOM JSON dataset")
            if response.status_code == 400 and not answer:
                refused = "the server refused the request (400)"
                outcomes += [
                    InstanceOutcome("failed", p.sop_instance_uid, p.sop_class_uid, refused, origin=p.origin)
                    for p in batch
                ]
            else:
                outcomes += _outcomes(batch, answer)
        body = response = None  # the answer's request holds the body too: one batch's body at a time
        done += len(batch) + len(unreadable)
        if progress:
            progress(done, total)
    order = {p.origin: i for i, p in enumerate(prepared)}
    outcomes.sort(key=lambda o: order.get(o.origin or "", 0))
    return StoreResult(outcomes)
