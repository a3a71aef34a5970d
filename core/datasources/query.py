"""One parsed, validated search: what every source's ``query.*.search`` receives.

Filters are DICOM keywords as QIDO-RS takes them (``PatientName="DOE*"``), 8-hex tags, or
OHIF's worklist names (``patientName``, ``startDate``...). A misspelt or wrongly-cased keyword
is an error with a suggestion: Orthanc silently ignores ``patientname=`` and answers every
study, which is the bug this module exists to prevent.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .errors import InvalidQueryError, InvalidQueryValueError
from .naturalize import _keyword_table, is_tag, keyword_for_tag, tag_for_keyword, vr_for_keyword, vr_for_tag

__all__ = ["LEVELS", "OHIF_ALIASES", "SearchQuery", "parse_search"]

Level = Literal["study", "series", "instance"]
LEVELS: dict[str, Level] = {
    "study": "study",
    "studies": "study",
    "series": "series",
    "instance": "instance",
    "instances": "instance",
}

# OHIF's worklist filter names (qido.js mapParams and the worklist's URL names)
OHIF_ALIASES: dict[str, str] = {
    "patientName": "PatientName",
    "patientId": "PatientID",
    "mrn": "PatientID",
    "accessionNumber": "AccessionNumber",
    "accession": "AccessionNumber",
    "studyDescription": "StudyDescription",
    "description": "StudyDescription",
    "modalitiesInStudy": "ModalitiesInStudy",
    "modalities": "ModalitiesInStudy",
    "studyInstanceUid": "StudyInstanceUID",
    "studyInstanceUID": "StudyInstanceUID",
    "seriesInstanceUid": "SeriesInstanceUID",
    "seriesInstanceUID": "SeriesInstanceUID",
    "sopInstanceUid": "SOPInstanceUID",
    "sopInstanceUID": "SOPInstanceUID",
}
_CONTROL = frozenset({"limit", "offset", "fuzzymatching", "includefield"})
_CONTROL_ALIASES = {
    "resultsPerPage": "limit",
    "fuzzyMatching": "fuzzymatching",
    "includeField": "includefield",
}
_DATE_ALIASES = ("startDate", "endDate")


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        raise InvalidQueryError(f"a filter value cannot be a boolean: {_shown(value)}")
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y%m%d%H%M%S")
    if isinstance(value, _dt.date):
        return value.strftime("%Y%m%d")
    if isinstance(value, _dt.time):
        return value.strftime("%H%M%S")
    raise InvalidQueryError(f"a filter value must be text, a number, a date or a list of those, not {_shown(value)}")


def _normalize_value(key: str, value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | set | frozenset):
        items = [_value_text(v) for v in value if v is not None and v != ""]
        if not items:
            return None
        return items[0] if len(items) == 1 else items
    text = _value_text(value)
    return text if text != "" else None


_LOWERED: dict[str, str] = {}  # lower-cased keyword or alias -> itself; built once, from the dictionary


def _suggest(name: str) -> str:
    """A hint for a misspelt keyword. Built for a bad request's cost, not a dictionary scan's:
    difflib only compares names of about the same length (a ratio of 0.75 needs that anyway)."""
    keywords = _keyword_table()
    if not _LOWERED:
        lowered = {k.lower(): k for k in OHIF_ALIASES}
        lowered.update({k.lower(): k for k in keywords})  # the keyword wins over the alias
        _LOWERED.update(lowered)
    if name.lower() in _LOWERED:
        return f"; did you mean {_LOWERED[name.lower()]!r}? (keywords are case-sensitive)"
    slack = len(name) // 3 + 1
    candidates = [k for k in _LOWERED.values() if abs(len(k) - len(name)) <= slack]
    import difflib  # only to suggest a name for a mistyped one

    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.75)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _shown(value: Any) -> str:
    """``repr`` cut short: an error names the input without echoing a megabyte of it."""
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:100]}... ({len(text)} characters)"


def _filter_key(name: str) -> str:
    """A keyword, alias, 8-hex tag or dotted sequence path -> the canonical filter key."""
    if not isinstance(name, str):
        raise InvalidQueryError(f"a filter name is a string (a DICOM keyword or tag), not {_shown(name)}")
    if name in OHIF_ALIASES:
        return OHIF_ALIASES[name]
    if tag_for_keyword(name) is not None:
        return name
    if is_tag(name) or (name.startswith("(") and "," in name):
        keyword = keyword_for_tag(name)
        if keyword is not None:
            return keyword
        if is_tag(name):
            return name.upper()  # private or unknown tag: kept as the tag
    if "." in name:
        return ".".join(_filter_key(part) for part in name.split("."))
    hint = _suggest(name) if len(name) <= 200 else ""
    raise InvalidQueryError(f"{_shown(name)} is not a DICOM keyword, tag or search option{hint}")


def _non_negative_int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidQueryError(f"{name} must be a whole number, not {_shown(value)}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise InvalidQueryError(f"{name} must be a whole number, not {_shown(value)}") from None
    if isinstance(value, float) and value != number:
        raise InvalidQueryError(f"{name} must be a whole number, not {_shown(value)}")
    if number < 0:
        raise InvalidQueryError(f"{name} must be 0 or more, not {number}")
    return number


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidQueryError(f"{name} must be true or false, not {_shown(value)}")


def _includefield(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    parts: list[str] = []
    for item in value if isinstance(value, list | tuple) else [value]:
        parts += [p.strip() for p in str(item).split(",") if p.strip()]
    if any(p.lower() == "all" for p in parts):
        return ("all",)
    return tuple(dict.fromkeys(_filter_key(p) for p in parts))


_DATE = r"\d{8}|\d{4}-\d{2}-\d{2}|\d{4}\.\d{2}\.\d{2}"  # the last: ACR-NEMA's form
_BOUND = rf"{_DATE}|\d{{6}}|\d{{4}}"  # a range may be bounded by a year or a month: 2020-, 202003-202006
_DATE_RANGE = re.compile(rf"(?P<one>{_DATE})|(?P<start>{_BOUND})?-(?P<end>{_BOUND})?")
_TIME = re.compile(r"(?P<h>\d{2})(?::?(?P<m>\d{2})(?::?(?P<s>\d{2})(?:\.\d{1,6})?)?)?")
_DATETIME = re.compile(r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?")
_UID = re.compile(r"(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))*")
_INT = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_EXPECTED = "a date (YYYYMMDD or YYYY-MM-DD) or a range of dates (20200101-20201231, 20200101-, -20201231)"


def _one_date(key: str, original: Any, text: str) -> str:
    digits = text.replace("-", "").replace(".", "")
    try:
        _dt.date(int(digits[:4]), int(digits[4:6] or 1), int(digits[6:8] or 1))
    except ValueError:
        raise InvalidQueryValueError(key, original, _DATE_EXPECTED) from None
    return digits


def _date_range(key: str, value: str) -> str:
    match = _DATE_RANGE.fullmatch(value.strip())
    if match is None or value.strip() == "-":
        raise InvalidQueryValueError(key, value, _DATE_EXPECTED)
    if match["one"]:
        return _one_date(key, value, match["one"])
    start = _one_date(key, value, match["start"]) if match["start"] else ""
    end = _one_date(key, value, match["end"]) if match["end"] else ""
    if start and end and start > end:
        raise InvalidQueryValueError(key, value, f"{_DATE_EXPECTED}: the range ends before it starts")
    return f"{start}-{end}"


def _time(key: str, original: str, text: str) -> str:
    match = _TIME.fullmatch(text)
    if match is None or int(match["h"]) > 23 or int(match["m"] or 0) > 59 or int(match["s"] or 0) > 60:
        raise InvalidQueryValueError(key, original, "a time (HHMMSS.FFFFFF, HH:MM:SS, HHMM or HH) or a range of times")
    return text.replace(":", "")


def _ranged(key: str, value: str, one: Any) -> str:
    start, sep, end = value.partition("-")
    if not sep:
        return one(key, value, value)
    if not start and not end:
        raise InvalidQueryValueError(key, value, "a value or a range (A-B, A-, -B)")
    return f"{one(key, value, start) if start else ''}-{one(key, value, end) if end else ''}"


def _datetime(key: str, original: str, text: str) -> str:
    if _DATETIME.fullmatch(text) is None:
        raise InvalidQueryValueError(key, original, "a date-time (YYYYMMDDHHMMSS.FFFFFF&ZZXX, from YYYY) or a range")
    return text


def _uid(key: str, value: str) -> str:
    for uid in value.split(","):  # QIDO-RS also lists UIDs with commas
        uid = uid.strip()
        if "*" in uid or "?" in uid:  # a prefix search some sources answer: the rest must still be a UID
            uid = re.sub(r"[*?]", "", uid) or "0"
            uid = uid.strip(".") or "0"
        if len(uid) > 64 or _UID.fullmatch(uid) is None:
            raise InvalidQueryValueError(key, value, "a UID (digits and dots, at most 64 characters)")
    return value


def _number(key: str, value: str, vr: str) -> str:
    whole = vr not in ("DS", "FL", "FD")
    text = value.strip()
    if _DECIMAL.fullmatch(text) is None or (whole and _INT.fullmatch(text) is None and not float(text).is_integer()):
        raise InvalidQueryValueError(key, value, f"{'a whole number' if whole else 'a number'} (the key is numeric)")
    return value.strip()


_NUMERIC_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "SV", "UV", "FL", "FD"})


def _check_value(name: str, key: str, value: str | list[str]) -> str | list[str]:
    """``value`` checked against the VR of ``key`` (dates, times, UIDs, numbers); errors name ``name``."""
    last = key.rsplit(".", 1)[-1]
    vr = vr_for_tag(last) if is_tag(last) else vr_for_keyword(last)
    if vr is None or vr not in ("DA", "TM", "DT", "UI", *_NUMERIC_VRS):
        return value
    items = value if isinstance(value, list) else value.split("\\")
    if vr == "DA":
        checked = [_date_range(name, v) for v in items]
    elif vr == "TM":
        checked = [_ranged(name, v, _time) for v in items]
    elif vr == "DT":
        checked = [_ranged(name, v, _datetime) for v in items]
    elif vr == "UI":
        checked = [_uid(name, v) for v in items]
    else:
        checked = [_number(name, v, vr) for v in items]
    if isinstance(value, list):
        return checked
    return "\\".join(checked)


def _date_text(name: str, value: Any) -> str:
    """A ``startDate``/``endDate`` value: one date, YYYYMMDD or YYYY-MM-DD (or a date object)."""
    text = _value_text(value.date() if isinstance(value, _dt.datetime) else value)
    if re.fullmatch(_DATE, text) is None:
        raise InvalidQueryValueError(name, value, "a date (YYYYMMDD or YYYY-MM-DD)")
    return _one_date(name, value, text)


@attrs.frozen
class SearchQuery:
    """A validated search: filters by keyword, and QIDO's paging and options."""

    level: Level
    filters: dict[str, str | list[str]] = attrs.field(factory=dict)
    limit: int | None = None
    offset: int = 0
    fuzzymatching: bool = False
    includefield: tuple[str, ...] = ()

    def to_qido_params(self) -> list[tuple[str, str]]:
        """Name/value pairs, NOT percent-encoded (servers differ; encoding is the source's job)."""
        params = [(k, "\\".join(v) if isinstance(v, list) else v) for k, v in self.filters.items()]
        if self.limit is not None:
            params.append(("limit", str(self.limit)))
        if self.offset:
            params.append(("offset", str(self.offset)))
        if self.fuzzymatching:
            params.append(("fuzzymatching", "true"))
        if self.includefield:
            params.append(("includefield", ",".join(self.includefield)))
        return params

    def without_paging(self) -> SearchQuery:
        return attrs.evolve(self, limit=None, offset=0)

    def page(self, records: list[Any]) -> list[Any]:
        """Apply ``offset`` then ``limit`` to already filtered records."""
        end = None if self.limit is None else self.offset + self.limit
        return records[self.offset : end]


def parse_search(level: str, filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> SearchQuery:
    """Validate the filters of a ``query.<level>.search`` call into a :class:`SearchQuery`.

    ``filters`` (a mapping, as OHIF passes them) and keyword arguments are merged; keyword
    arguments win. ``None`` and ``""`` mean no constraint and are dropped.
    """
    if not isinstance(level, str) or level not in LEVELS:
        raise InvalidQueryError(f"unknown query level {_shown(level)}; levels: study, series, instance")
    if filters is not None and not isinstance(filters, Mapping):
        raise InvalidQueryError(f"filters must be a mapping of keyword to value, not {type(filters).__name__}")
    given: dict[str, Any] = {**(filters or {}), **kwargs}

    control: dict[str, Any] = {}
    for name in list(given):
        canonical = _CONTROL_ALIASES.get(name, name)
        if canonical in _CONTROL:
            control[canonical] = given.pop(name)
    page_number = given.pop("pageNumber", None)

    start = given.pop("startDate", None)
    end = given.pop("endDate", None)
    out: dict[str, str | list[str]] = {}
    if start or end:
        if given.get("StudyDate"):
            raise InvalidQueryError("give StudyDate or startDate/endDate, not both")
        first = _date_text("startDate", start) if start else ""
        last = _date_text("endDate", end) if end else ""
        if first and last and first > last:
            raise InvalidQueryValueError("endDate", end, f"a date on or after startDate ({start!r})")
        out["StudyDate"] = f"{first}-{last}"

    for name, value in given.items():
        key = _filter_key(name)
        normalized = _normalize_value(key, value)
        if normalized is None:
            continue
        if key in out:
            raise InvalidQueryError(f"{key} is given twice (as {_shown(name)} and another name)")
        out[key] = _check_value(name, key, normalized)

    limit = _non_negative_int("limit", control.get("limit"))
    offset = _non_negative_int("offset", control.get("offset")) or 0
    if page_number is not None:
        page = _non_negative_int("pageNumber", page_number)
        if limit is None or not page:
            raise InvalidQueryError("pageNumber counts from 1 and needs resultsPerPage (or limit)")
        offset += (page - 1) * limit  # the worklist's pages count from 1
    return SearchQuery(
        level=LEVELS[level],
        filters=out,
        limit=limit,
        offset=offset,
        fuzzymatching=_bool("fuzzymatching", control.get("fuzzymatching", False)),
        includefield=_includefield(control.get("includefield")),
    )
