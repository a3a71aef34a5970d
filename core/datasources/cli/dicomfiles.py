"""What ``datasources store`` sends: each file read and checked before any source sees it.

Three kinds of file are accepted, as Orthanc accepts them: a Part-10 file (sent byte for
byte), a Part-10 file without its 128-byte preamble (starts with ``DICM``) and a bare
dataset with no Part-10 header at all (read as pydicom's ``force=True`` reads it). The last
two are sent as pydicom Datasets, which the sources write as Part-10, and the summary says
how each was read. A file that does not parse, stops short of an element's declared length
(truncated) or has no SOP Instance UID is refused by name and never sent, so it can never be
counted as stored; a second file with a SOP Instance UID already seen in the run is refused
as a duplicate, naming the first.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import attrs

__all__ = ["Prepared", "prepare", "refuse_duplicates"]

NO_PREAMBLE = "read as Part-10 without its 128-byte preamble"
HEADERLESS = "read as a bare dataset without a Part-10 header (pydicom force=True)"
_UNDEFINED = 0xFFFFFFFF


@attrs.frozen
class Prepared:
    """One file as it will be sent (``item``), or why it will not be (``error``)."""

    origin: str
    item: Any = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    note: str | None = None
    error: str | None = None


def _truncated(ds: Any) -> str | None:
    """The keyword of a top-level element whose value stops short of its declared length."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.dataelem import RawDataElement

    for tag, element in ds._dict.items():
        raw = isinstance(element, RawDataElement) and element.length != _UNDEFINED and element.value is not None
        if raw and len(element.value) < element.length:
            return keyword_for_tag(tag) or str(tag)
    return None


def prepare(path: Path) -> Prepared:
    """Read ``path`` fully and decide what to send."""
    from pydicom import dcmread

    origin = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Prepared(origin, error=f"cannot read the file: {exc.strerror or exc}")
    note = None
    if data[128:132] != b"DICM":
        if data[:4] == b"DICM":
            data, note = b"\0" * 128 + data, NO_PREAMBLE
        else:
            note = HEADERLESS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what matters is whether it parses, checked below
            ds = dcmread(io.BytesIO(data), force=True)
            cut = _truncated(ds)
            sop = str(ds.get("SOPInstanceUID", "") or "").strip()
            sop_class = str(ds.get("SOPClassUID", "") or "").strip() or None
    except Exception as exc:
        return Prepared(origin, error=f"not DICOM: it does not parse ({type(exc).__name__}: {exc})")
    if note == HEADERLESS and (cut is not None or not sop):
        return Prepared(origin, error="not DICOM: no Part-10 header, and it does not read as a dataset either")
    if cut is not None:
        return Prepared(origin, sop_instance_uid=sop or None, error=f"truncated: the file ends inside {cut}")
    if not sop:
        return Prepared(origin, error="not DICOM: no SOPInstanceUID could be read")
    if note is None:
        return Prepared(origin, path, sop, sop_class)
    ds.preamble = None
    return Prepared(origin, ds, sop, sop_class, note=note)


def refuse_duplicates(batch: list[Prepared], seen: dict[str, str]) -> list[Prepared]:
    """``batch`` with every file whose SOP Instance UID was seen before in the run refused; updates ``seen``."""
    checked: list[Prepared] = []
    for item in batch:
        uid = item.sop_instance_uid
        if item.error is None and uid is not None:
            if uid in seen:
                item = attrs.evolve(
                    item, item=None, error=f"duplicate SOP Instance UID in this run: the same as {seen[uid]} (not sent)"
                )
            else:
                seen[uid] = item.origin
        checked.append(item)
    return checked
