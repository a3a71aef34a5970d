"""One parsed, validated search: what every source's ``query.*.search`` receives.

Filters are DICOM keywords as QIDO-RS takes them (``PatientName="DOE*"``), 8-hex tags, or
OHIF's worklist names (``patientName``, ``startDate``...). A misspelt or wrongly-cased keyword
is an error with a suggestion: Orthanc silently ignores ``patientname=`` and answers every
study, which is the bug this module exists to prevent.
"""

from __future__ import annotations

import datetime as _dt
import difflib
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .errors import InvalidQueryError
from .naturalize import _keyword_table, is_tag, keyword_for_tag, tag_for_keyword

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


def _date_text(value: Any) -> str:
    text = _value_text(value).replace("-", "") if isinstance(value, str) else _value_text(value)
    if len(text) != 8 or not text.isdigit():
        raise InvalidQueryError(f"a date must be YYYYMMDD (or YYYY-MM-DD), not {_shown(value)}")
    return text


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
        out["StudyDate"] = f"{_date_text(start) if start else ''}-{_date_text(end) if end else ''}"

    for name, value in given.items():
        key = _filter_key(name)
        normalized = _normalize_value(key, value)
        if normalized is None:
            continue
        if key in out:
            raise InvalidQueryError(f"{key} is given twice (as {_shown(name)} and another name)")
        out[key] = normalized

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
