"""QIDO-RS matching rules (PS3.4 C.2.2.2, PS3.18 8.3.4), in one place for every source.

A query is compiled once into one predicate per filter, then run over the records: the cost
per record is a dict look-up and a pre-compiled regular expression or comparison per filter.
Records are naturalized dicts (``format="naturalized"``) or raw DICOM JSON rows as a QIDO or
static-WADO answer holds them (``format="dicom_json"``).

The rules, including where OHIF's StaticWadoClient differs:

========================  =====================================================================
query value               matches
========================  =====================================================================
``""``, ``*``, ``None``   everything, even records without the attribute (universal matching)
``x*``, ``?x``            wildcards, anchored at both ends: ``x*`` is a prefix match (OHIF: substring)
``A\\B`` or ``[A, B]``    any of the values (OHIF compares the whole string)
``A,B`` (UI, CS)          any of the values (UIDs and code strings cannot hold commas)
PN                        against the Alphabetic group, case-insensitive; with ``fuzzy`` every
                          query word must begin some word of the name
LO SH CS LT ST UT UC AE   case-insensitive; UI, DA, TM and numbers are exact
DA, TM, DT ``A-B``        inclusive range, open on either side (``A-``, ``-B``); no dash: exact
IS DS US UL SS SL FL FD   numerically (``"2"`` matches ``2`` and ``2.0``)
multi-valued attribute    matches if any of its values matches (``ModalitiesInStudy``)
missing or empty value    no match for a non-universal query
========================  =====================================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from .errors import InvalidQueryError
from .naturalize import tag_for_keyword, vr_for_keyword, vr_for_tag
from .query import SearchQuery

__all__ = ["compile_matcher", "filter_records", "matches"]

RecordFormat = Literal["naturalized", "dicom_json"]
Predicate = Callable[[Mapping[str, Any]], bool]

_CASE_INSENSITIVE = frozenset({"PN", "LO", "SH", "CS", "LT", "ST", "UT", "UC", "AE"})
_NUMERIC = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "SV", "UV"})
_RANGE = frozenset({"DA", "TM", "DT"})
_COMMA_LISTS = frozenset({"UI", "CS"})
_MISSING = object()


def _split_query(value: str | list[str], vr: str | None) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        for part in item.split("\\"):
            if vr in _COMMA_LISTS:
                out += [p.strip() for p in part.split(",")]
            else:
                out.append(part)
    return out


def _wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


# -- value testers: list of record values (strings or numbers) -> bool ----------------------


def _text_tester(parts: list[str], vr: str | None, fuzzy: bool) -> Callable[[list[Any]], bool]:
    ignore_case = vr in _CASE_INSENSITIVE or vr is None
    if vr == "PN" and fuzzy:
        return _fuzzy_name_tester(parts)
    exact: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for part in parts:
        if "*" in part or "?" in part:
            patterns.append(_wildcard_regex(part, ignore_case))
        else:
            exact.add(part.casefold() if ignore_case else part)
    strip = vr not in ("UI",)

    def test(values: list[Any]) -> bool:
        for value in values:
            text = str(value)
            if strip:
                text = text.strip()
            if not text:
                continue
            key = text.casefold() if ignore_case else text
            if key in exact:
                return True
            for pattern in patterns:
                if pattern.fullmatch(text):
                    return True
        return False

    return test


_NAME_SPLIT = re.compile(r"[\s^,=]+")


def _fuzzy_name_tester(parts: list[str]) -> Callable[[list[Any]], bool]:
    queries = []
    for part in parts:
        tokens = [t for t in _NAME_SPLIT.split(part.replace("*", " ")) if t]
        queries.append([_wildcard_regex(t + "*", True) for t in tokens])

    def test(values: list[Any]) -> bool:
        for value in values:
            words = [w for w in _NAME_SPLIT.split(str(value)) if w]
            for tokens in queries:
                if all(any(t.fullmatch(w) for w in words) for t in tokens):
                    return True
        return False

    return test


def _numeric_tester(key: str, parts: list[str]) -> Callable[[list[Any]], bool]:
    try:
        wanted = {float(p) for p in parts}
    except ValueError:
        raise InvalidQueryError(f"{key} is numeric; {parts!r} is not a number") from None

    def test(values: list[Any]) -> bool:
        for value in values:
            try:
                if float(value) in wanted:
                    return True
            except (TypeError, ValueError):
                continue
        return False

    return test


def _range_tester(key: str, parts: list[str], vr: str) -> Callable[[list[Any]], bool]:
    ranges: list[tuple[str, str]] = []
    exact: set[str] = set()
    for part in parts:
        part = part.strip()
        if vr == "DA":
            part = part.replace(".", "")
        if "-" in part:
            low, _, high = part.partition("-")
            if not low and not high:
                raise InvalidQueryError(f"{key}: {part!r} is not a range")
            ranges.append((low.strip(), high.strip()))
        elif "*" in part or "?" in part:
            raise InvalidQueryError(f"{key} takes a value or a range (A-B, A-, -B), not wildcards: {part!r}")
        else:
            exact.add(part)

    def test(values: list[Any]) -> bool:
        for value in values:
            text = str(value).strip()
            if not text:
                continue
            if text in exact:
                return True
            for low, high in ranges:
                # compare only as many characters as the bound has: 20200101 vs 20200101120000
                if low and text[: len(low)] < low:
                    continue
                if high and text[: len(high)] > high:
                    continue
                return True
        return False

    return test


# -- value extraction per record format --------------------------------------------------------


def _flatten(raw: Any, vr: str | None, out: list[Any]) -> None:
    if raw is None:
        return
    if isinstance(raw, list | tuple):
        for item in raw:
            _flatten(item, vr, out)
    elif isinstance(raw, Mapping):
        if "Alphabetic" in raw:
            out.append(raw["Alphabetic"])
        elif "Value" in raw:  # a DICOM JSON element
            _flatten(raw["Value"], vr, out)
    elif isinstance(raw, str) and "\\" in raw and vr != "PN":
        out.extend(raw.split("\\"))
    else:
        out.append(raw)


def _getter(key: str, record_format: RecordFormat) -> Callable[[Mapping[str, Any]], Any]:
    """Record -> the raw value of ``key`` (a dotted path walks into every sequence item)."""
    path = key.split(".")
    if record_format == "dicom_json":
        tags = [tag_for_keyword(p) or p for p in path]

        def get_json(record: Mapping[str, Any]) -> Any:
            current: list[Any] = [record]
            for i, tag in enumerate(tags):
                found: list[Any] = []
                for item in current:
                    element = item.get(tag) if isinstance(item, Mapping) else None
                    if element is None:
                        element = item.get(tag.lower()) if isinstance(item, Mapping) else None
                    if element is None:
                        continue
                    if i < len(tags) - 1:
                        found += element.get("Value") or []
                    else:
                        found.append(element.get("Value"))
                current = found
            return current if current else _MISSING

        return get_json

    if len(path) == 1:
        return lambda record: record.get(key, _MISSING)

    def get_nested(record: Mapping[str, Any]) -> Any:
        current: list[Any] = [record]
        for i, name in enumerate(path):
            found: list[Any] = []
            for item in current:
                if not isinstance(item, Mapping) or name not in item:
                    continue
                value = item[name]
                if i < len(path) - 1:
                    found += value if isinstance(value, list) else [value]
                else:
                    found.append(value)
            current = found
        return current if current else _MISSING

    return get_nested


def _vr_of(key: str) -> str | None:
    last = key.rsplit(".", 1)[-1]
    vr = vr_for_keyword(last) or vr_for_tag(last)
    if vr and " or " in vr:
        vr = vr.split(" or ")[0]
    return vr


def _is_universal(value: str | list[str]) -> bool:
    parts = value if isinstance(value, list) else [value]
    return any(p == "" or (set(p) == {"*"}) for p in parts)


def compile_matcher(query: SearchQuery, *, fuzzy: bool = False, format: RecordFormat = "naturalized") -> Predicate:
    """One predicate for the whole query; build it once, run it over many records."""
    if format not in ("naturalized", "dicom_json"):
        raise ValueError(f"format must be 'naturalized' or 'dicom_json', not {format!r}")
    fuzzy = fuzzy or query.fuzzymatching
    checks: list[tuple[Callable[[Mapping[str, Any]], Any], Callable[[list[Any]], bool], str | None]] = []
    for key, value in query.filters.items():
        if _is_universal(value):
            continue
        vr = _vr_of(key)
        parts = _split_query(value, vr)
        if vr in _RANGE:
            tester = _range_tester(key, parts, vr)
        elif vr in _NUMERIC:
            tester = _numeric_tester(key, parts)
        else:
            tester = _text_tester(parts, vr, fuzzy)
        checks.append((_getter(key, format), tester, vr))

    if not checks:
        return lambda record: True

    def predicate(record: Mapping[str, Any]) -> bool:
        for get, test, vr in checks:
            raw = get(record)
            if raw is _MISSING:
                return False
            values: list[Any] = []
            _flatten(raw, vr, values)
            if not test(values):
                return False
        return True

    return predicate


def matches(
    record: Mapping[str, Any],
    query: SearchQuery,
    *,
    fuzzy: bool = False,
    format: RecordFormat = "naturalized",
) -> bool:
    """Does one record match? (For many records, :func:`filter_records` compiles once.)"""
    return compile_matcher(query, fuzzy=fuzzy, format=format)(record)


def filter_records(
    records: Iterable[Any], query: SearchQuery, *, fuzzy: bool = False, format: RecordFormat = "naturalized"
) -> list[Any]:
    """The records that match, then ``offset`` and ``limit`` applied (QIDO pages after filtering)."""
    predicate = compile_matcher(query, fuzzy=fuzzy, format=format)
    matched = [r for r in records if predicate(r)]
    return query.page(matched)
