"""Does a naturalized record follow the value contract (docs/contracts.md, "Values")?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..naturalize import VR_MAP_KEY, is_multi_valued, vr_for_keyword

__all__ = ["REQUIRED", "value_problems"]

#: The UIDs every row of a level carries.
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "study": ("StudyInstanceUID",),
    "series": ("SeriesInstanceUID",),
    "instance": ("SOPInstanceUID",),
}
_TEXT = frozenset({"AE", "AS", "AT", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
_INTS = frozenset({"IS", "US", "SS", "UL", "SL", "UV", "SV"})
_NUMBERS = frozenset({"FL", "FD", "OF", "OD"})


def _scalar_problem(key: str, value: Any, vr: str) -> str | None:
    if vr == "PN":
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            return f'{key}: a PN value is {{"Alphabetic": str, ...}}, not {value!r}'
        return None
    if vr == "DS":
        return None if value.__class__ is float else f"{key}: DS is a float, not {type(value).__name__} {value!r}"
    if vr in _INTS:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{key}: {vr} is an int, not {type(value).__name__} {value!r}"
    if vr in _NUMBERS:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"{key}: {vr} is a number, not {value!r}"
    if vr in _TEXT:
        if not isinstance(value, str):
            return f"{key}: {vr} is a str, not {type(value).__name__} {value!r}"
        if value == "":
            return None  # an empty string from DICOM JSON is kept as sent (round trip exact)
        if vr == "AT" and not (len(value) == 8 and all(c in "0123456789ABCDEFabcdef" for c in value)):
            return f"{key}: AT is an 8-hex tag string, not {value!r}"
        if vr == "DA" and not (len(value) == 8 and value.isdigit()):
            return f"{key}: DA is YYYYMMDD, not {value!r}"
        if vr == "TM" and not value[:2].isdigit():
            return f"{key}: TM is HHMMSS[.ffffff], not {value!r}"
        if "\\" in value and vr in ("CS", "UI", "DA", "TM", "SH", "LO", "AE"):
            return f"{key}: several values are a list, not the backslash-joined {value!r}"
    return None


def value_problems(record: Mapping[str, Any], level: str | None = None, path: str = "") -> list[str]:
    """Every way ``record`` departs from the value contract (empty: it follows it)."""
    problems = [f"{path}{key}: missing" for key in REQUIRED.get(level or "", ()) if not record.get(key)]
    vr_map = record.get(VR_MAP_KEY) or {}
    for key, value in record.items():
        if not key[:1].isupper() or value is None:
            continue  # application fields (url, imageId, _vrMap...) and empty values
        vr = vr_map.get(key) or vr_for_keyword(key)
        if vr is None:
            continue  # private and unknown tags: their VR is whatever _vrMap says
        where = f"{path}{key}"
        if vr == "SQ":
            if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
                problems.append(f"{where}: a sequence is a list of datasets, not {type(value).__name__}")
                continue
            for i, item in enumerate(value):
                problems += value_problems(item, None, f"{where}[{i}].")
            continue
        if isinstance(value, Mapping) and ("BulkDataURI" in value or "InlineBinary" in value):
            continue
        if " or " in vr:
            continue
        if is_multi_valued(key):
            if not isinstance(value, list):
                problems.append(f"{where}: a multi-valued attribute is always a list, not {value!r}")
                continue
            if not value:
                problems.append(f"{where}: an empty value is None, not []")
            problems += [p for v in value if v is not None and (p := _scalar_problem(where, v, vr))]
        elif isinstance(value, list):
            problems.append(f"{where}: a single-valued attribute is not a list: {value!r}")
        else:
            problem = _scalar_problem(where, value, vr)
            if problem:
                problems.append(problem)
    return problems
