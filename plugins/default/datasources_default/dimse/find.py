"""The shared ``SearchQuery`` as a Study Root C-FIND, and the answer filtered by the shared rules.

A filter goes to the PACS only where DIMSE matching is the same as QIDO's rules in
:mod:`datasources.matching`, or wider (so filtering again client-side gives the same answer):
UIDs and UID lists, dates/times and their ranges, and single text values without lower-case
letters (PACSs differ on case: Orthanc folds PN, dcmqrscp does not; stored values are upper
case by habit, so an upper-case query narrows safely). Everything else — lists of text values,
lower-case text, fuzzy PN, numbers, ``ModalitiesInStudy`` at study level (optional in DIMSE,
dcmqrscp ignores it) — is only asked for as a return key and matched here.

``limit``/``offset`` are applied after that matching; once enough records matched, a C-CANCEL
stops the PACS.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from datasources.matching import compile_matcher
from datasources.naturalize import from_pydicom, tag_for_keyword, vr_for_keyword
from datasources.query import SearchQuery

__all__ = ["RETURN_KEYS", "build_identifier", "client_query", "record_of"]

#: The attributes asked for at each level (QIDO-RS's defaults, PS3.18 Table 6.7.1-2).
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "study": (
        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDescription",
        "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    "series": (
        "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
        "SeriesDate", "SeriesTime", "BodyPartExamined", "NumberOfSeriesRelatedInstances",
    ),
    "instance": (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
        "Rows", "Columns", "NumberOfFrames", "BitsAllocated",
    ),
}  # fmt: skip
_LEVEL = {"study": "STUDY", "series": "SERIES", "instance": "IMAGE"}
_SENT_VRS = frozenset({"UI", "DA", "TM", "DT", "PN", "LO", "SH", "CS", "AE"})
_DROP = ("QueryRetrieveLevel", "RetrieveAETitle", "SpecificCharacterSet", "InstanceAvailability")


def _pacs_value(key: str, value: str | list[str], level: str, fuzzy: bool) -> str | None:
    """The value to send for one filter, or None when only the client can match it the same way."""
    vr = vr_for_keyword(key)
    if vr not in _SENT_VRS or "." in key:
        return None
    if key == "ModalitiesInStudy":
        return None
    items = value if isinstance(value, list) else [value]
    if vr == "UI":
        uids = [p.strip() for item in items for part in item.split("\\") for p in part.split(",")]
        if any(not u or "*" in u or "?" in u for u in uids):
            return None
        return "\\".join(uids)
    if len(items) != 1 or "\\" in items[0] or ("," in items[0] and vr == "CS"):
        return None  # value lists are UID-only in DIMSE
    text = items[0]
    if vr in ("DA", "TM", "DT"):
        return text
    if vr == "PN" and fuzzy:
        return None
    if text != text.upper() or not text.isascii():
        return None  # case: PACSs differ; the client folds
    return text


def build_identifier(query: SearchQuery, level: str, scope: Mapping[str, str]) -> tuple[Any, SearchQuery]:
    """The C-FIND identifier, and the query the client still has to match (without paging)."""
    from pydicom import Dataset
    from pydicom.datadict import dictionary_VR

    ds = Dataset()
    ds.QueryRetrieveLevel = _LEVEL[level]
    keys = list(RETURN_KEYS[level])
    if query.includefield and query.includefield != ("all",):
        keys += [k for k in query.includefield if "." not in k]
    keys += [k for k in query.filters if "." not in k]
    for key in dict.fromkeys(keys):
        tag = tag_for_keyword(key)
        if tag is None:
            continue
        tag_int = int(tag, 16)
        vr = dictionary_VR(tag_int).split(" or ")[0]
        ds.add_new(tag_int, vr, [] if vr == "SQ" else None)
    fuzzy = query.fuzzymatching
    for key, value in query.filters.items():
        sent = _pacs_value(key, value, level, fuzzy)
        if sent is not None and key in ds:
            setattr(ds, key, sent)
    for key, uid in scope.items():
        setattr(ds, key, uid)
    return ds, client_query(query)


def client_query(query: SearchQuery) -> SearchQuery:
    """Everything is matched again client-side (what the PACS matched passes again unchanged)."""
    return query.without_paging()


_INTS = frozenset({"IS", "US", "UL", "SS", "SL", "SV", "UV"})
_FLOATS = frozenset({"DS", "FL", "FD"})


def _plain(value: Any, vr: str) -> Any:
    if vr == "PN":
        return {"Alphabetic": str(value)}
    if vr in _INTS:
        return int(value)
    if vr in _FLOATS:
        number = float(value)
        return int(number) if number.is_integer() and vr == "DS" and "." not in str(value) else number
    return str(value)


def record_of(identifier: Any) -> dict[str, Any]:
    """A C-FIND answer as a naturalized record, without the query's bookkeeping attributes.

    Answers are flat (keyword -> text, number or PN), so they are converted element by
    element; one holding a sequence or a private element goes the general way (DICOM JSON).
    """
    from pydicom.multival import MultiValue

    record: dict[str, Any] = {}
    for elem in identifier:
        keyword, vr, value = elem.keyword, elem.VR, elem.value
        if not keyword or vr in ("SQ", "OB", "OW", "UN") or " or " in vr:
            return _general(identifier)
        if keyword in _DROP or value is None or value == "":
            continue
        if not isinstance(value, MultiValue | list):
            record[keyword] = _plain(value, vr)
        else:
            items = [_plain(v, vr) for v in value if v is not None and v != ""]
            if items:
                record[keyword] = items if len(items) > 1 else items[0]
    return record


def _general(identifier: Any) -> dict[str, Any]:
    record = from_pydicom(identifier)
    for key in _DROP:
        record.pop(key, None)
    return {k: v for k, v in record.items() if v not in (None, "", [])}


def matched(records: Iterator[dict[str, Any]], query: SearchQuery) -> Iterator[dict[str, Any]]:
    """The records that pass the shared rules, paged; stops pulling once the page is full."""
    predicate = compile_matcher(query.without_paging(), fuzzy=query.fuzzymatching)
    wanted = None if query.limit is None else query.offset + query.limit
    seen = 0
    for record in records:
        if not predicate(record):
            continue
        seen += 1
        if seen > query.offset:
            yield record
        if wanted is not None and seen >= wanted:
            return
