"""The value contract for records a source builds itself (docs/contracts.md, "Values").

:func:`datasources.naturalize.naturalize` gives DICOM JSON this shape; :func:`conform` gives
it to a dict a source made by hand (a manifest row, a JSON document, an index row), so every
source hands out the same Python type for the same attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .multiplicity import _number, is_multi_valued
from .naturalize import VR_MAP_KEY, _key_entry

__all__ = ["conform"]

_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UI", "UC"})


def _dicom_text(value: Any, vr: str | None) -> Any:
    """dates and times given as Python objects become DICOM strings (DA, TM, DT)."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H%M%S") if vr != "DA" else value.strftime("%Y%m%d")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    if isinstance(value, dt.time):
        return value.strftime("%H%M%S")
    return value


def _conform_value(key: str, value: Any, vr: str | None) -> Any:
    if value is None or value == "" or (value.__class__ in (list, tuple) and not value):
        return None
    if vr == "SQ":
        items = value if isinstance(value, list | tuple) else [value]
        return [conform(item) if isinstance(item, Mapping) else item for item in items]
    if isinstance(value, Mapping) and ("BulkDataURI" in value or "InlineBinary" in value):
        return dict(value)
    values = list(value) if isinstance(value, list | tuple) else [value]
    if vr in _STRING_VRS and len(values) == 1 and isinstance(values[0], str) and "\\" in values[0]:
        values = [v for v in values[0].split("\\")]  # "CT\\MR": DICOM's multi-value string
    if vr == "PN":
        values = [v if isinstance(v, Mapping) else {"Alphabetic": str(v)} for v in values if v not in (None, "")]
    elif vr == "DS" or vr == "IS":
        values = [_number(v, vr) for v in values]
    elif vr in ("DA", "TM", "DT"):
        values = [_dicom_text(v, vr) for v in values]
    if not values:
        return None
    if is_multi_valued(key) or (vr is None and len(values) > 1):
        return values
    return values[0] if len(values) == 1 else values


def conform(record: Mapping[str, Any]) -> dict[str, Any]:
    """A naturalized record a source built itself, brought to the value contract.

    Multi-valued attributes (dictionary VM other than 1) become lists (``"CT"`` and
    ``"CT\\MR"`` alike), single-valued ones scalars; PN strings become ``{"Alphabetic": ...}``;
    DS values floats and IS values ints (strings parsed); dates and times DICOM strings;
    empty values (``""``, ``[]``) ``None``; sequence items conformed in turn. Application
    fields (``url``, ``imageId``, ``_vrMap``...) and unknown keys are kept as they are.
    """
    vr_map = record.get(VR_MAP_KEY) or {}
    out: dict[str, Any] = {}
    for key, value in record.items():
        entry = _key_entry(key) if key[:1].isupper() or key[:1].isdigit() else None
        if not entry:
            out[key] = value
            continue
        vr = vr_map.get(key) or entry[1]
        if vr is not None and " or " in vr:
            vr = None if vr != "US or SS" and "OB" not in vr else vr.split(" or ")[0]
        out[key] = _conform_value(key, value, vr)
    return out
