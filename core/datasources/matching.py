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

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from .errors import InvalidQueryError, MalformedResponseError
from .naturalize import tag_for_keyword, vr_for_keyword, vr_for_tag
from .query import SearchQuery
from .wildcards import fuzzy_name_tester, wildcard

__all__ = ["compile_matcher", "filter_records", "matches"]

RecordFormat = Literal["naturalized", "dicom_json"]
Predicate = Callable[[Mapping[str, Any]], bool]

_CASE_INSENSITIVE = frozenset({"PN", "LO", "SH", "CS", "LT", "ST", "UT", "UC", "AE"})
_NUMERIC = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "SV", "UV"})
_RANGE = frozenset({"DA", "TM", "DT"})
_COMMA_LISTS = frozenset({"UI", "CS"})


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


# -- value testers: one record value (a string or a number) -> bool --------------------------
#
# Built once per query. Case-insensitive matching casefolds the query here and each value
# once; the common wildcard shapes (``x*``, ``*x*``, ``*x``) become str methods, not regexes.

ValueTest = Callable[[Any], bool]


def _text_tester(parts: list[str], vr: str | None, fuzzy: bool) -> ValueTest:
    if vr == "PN" and fuzzy:
        return fuzzy_name_tester(parts)
    fold = vr in _CASE_INSENSITIVE or vr is None
    exact: set[str] = set()
    prefixes: list[str] = []
    contains: list[str] = []
    suffixes: list[str] = []
    patterns: list[Callable[[str], bool]] = []
    for part in parts:
        part = part.casefold() if fold else part
        inner = part.strip("*")
        if "*" not in part and "?" not in part:
            exact.add(part)
        elif "?" in part or "*" in inner:
            patterns.append(wildcard(part))
        elif part.startswith("*") and part.endswith("*"):
            contains.append(inner)
        elif part.endswith("*"):
            prefixes.append(inner)
        else:
            suffixes.append(inner)
    prefix_tuple, suffix_tuple = tuple(prefixes), tuple(suffixes)
    strip = vr != "UI"

    def test(value: Any) -> bool:
        text = value if value.__class__ is str else str(value)
        if strip:
            text = text.strip()
        if not text:
            return False
        if fold:
            text = text.casefold()
        if text in exact:
            return True
        if prefix_tuple and text.startswith(prefix_tuple):
            return True
        if suffix_tuple and text.endswith(suffix_tuple):
            return True
        for needle in contains:
            if needle in text:
                return True
        for pattern in patterns:
            if pattern(text):
                return True
        return False

    return test


def _numeric_tester(key: str, parts: list[str]) -> ValueTest:
    try:
        wanted = {float(p) for p in parts}
    except ValueError:
        raise InvalidQueryError(f"{key} is numeric; {parts!r} is not a number") from None

    def test(value: Any) -> bool:
        try:
            return float(value) in wanted
        except (TypeError, ValueError):
            return False

    return test


def _range_tester(key: str, parts: list[str], vr: str) -> ValueTest:
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

    def test(value: Any) -> bool:
        text = str(value).strip()
        if not text:
            return False
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


def _any_value(raw: Any, test: ValueTest, split: bool) -> bool:
    """Does any value in ``raw`` (a scalar, list, PN object or DICOM JSON element) pass?"""
    if raw is None:
        return False
    cls = raw.__class__
    if cls is list or cls is tuple:
        for item in raw:
            if _any_value(item, test, split):
                return True
        return False
    if cls is dict or isinstance(raw, Mapping):
        if "Alphabetic" in raw:
            return _any_value(raw["Alphabetic"], test, False)
        if "Value" in raw:
            return _any_value(raw["Value"], test, split)
        return False
    if split and cls is str and "\\" in raw:
        return any(test(part) for part in raw.split("\\"))
    return test(raw)


def _check(
    key: str, record_format: RecordFormat, test: ValueTest, vr: str | None
) -> Callable[[Mapping[str, Any]], bool]:
    """Record -> does the attribute ``key`` (a dotted path walks into every sequence item) match?"""
    split = vr != "PN"
    path = key.split(".")
    if record_format == "dicom_json":
        tags = [tag_for_keyword(p) or p for p in path]
        if len(tags) == 1:
            tag = tags[0]
            lower = tag.lower()

            def check_json(record: Mapping[str, Any]) -> bool:
                element = record.get(tag)
                if element is None:
                    element = record.get(lower)
                    if element is None:
                        return False
                values = element.get("Value")
                if not values:
                    return False
                if values.__class__ is not list:
                    raise TypeError(f"{tag}: Value is a {type(values).__name__}, not a list")
                for value in values:
                    if value.__class__ is dict:
                        value = value.get("Alphabetic")
                        if value is None:
                            continue
                    elif split and value.__class__ is str and "\\" in value:
                        if any(test(v) for v in value.split("\\")):
                            return True
                        continue
                    if test(value):
                        return True
                return False

            return check_json

        def check_json_path(record: Mapping[str, Any]) -> bool:
            current: list[Any] = [record]
            for tag in tags[:-1]:
                current = [
                    item
                    for parent in current
                    for item in ((parent.get(tag) or {}).get("Value") or [] if isinstance(parent, Mapping) else [])
                ]
            last = tags[-1]
            return any(_any_value(parent.get(last), test, split) for parent in current if isinstance(parent, Mapping))

        return check_json_path

    if len(path) == 1:
        return lambda record: _any_value(record.get(key), test, split)

    def check_path(record: Mapping[str, Any]) -> bool:
        current: list[Any] = [record]
        for name in path[:-1]:
            found: list[Any] = []
            for parent in current:
                value = parent.get(name) if isinstance(parent, Mapping) else None
                if isinstance(value, list):
                    found += value
                elif value is not None:
                    found.append(value)
            current = found
        last = path[-1]
        return any(_any_value(parent.get(last), test, split) for parent in current if isinstance(parent, Mapping))

    return check_path


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
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for key, value in query.filters.items():
        if _is_universal(value):
            continue
        vr = _vr_of(key)
        parts = _split_query(value, vr)
        if vr in _RANGE:
            test = _range_tester(key, parts, vr)
        elif vr in _NUMERIC:
            test = _numeric_tester(key, parts)
        else:
            test = _text_tester(parts, vr, fuzzy)
        checks.append(_check(key, format, test, vr))

    if not checks:
        return lambda record: True
    if len(checks) == 1:
        return checks[0]
    first, *rest = checks

    def predicate(record: Mapping[str, Any]) -> bool:
        if not first(record):
            return False
        for check in rest:
            if not check(record):
                return False
        return True

    return predicate


_UNREADABLE = (AttributeError, TypeError, KeyError, RecursionError)


def _unreadable(index: int, record: Any, query: SearchQuery, exc: BaseException) -> MalformedResponseError:
    """A record of the wrong shape (not a mapping, a ``Value`` that is not a list, nesting past
    the interpreter's limit): the backend's data is wrong, so a typed error that says where."""
    detail = "nested too deeply" if isinstance(exc, RecursionError) else f"{type(exc).__name__}: {exc}"
    keys = ", ".join(query.filters) or "no filter"
    return MalformedResponseError(
        f"record {index} ({type(record).__name__}) cannot be matched against {keys}: {detail}"[:500]
    )


def matches(
    record: Mapping[str, Any], query: SearchQuery, *, fuzzy: bool = False, format: RecordFormat = "naturalized"
) -> bool:
    """Does one record match? (For many records, :func:`filter_records` compiles once.)"""
    predicate = compile_matcher(query, fuzzy=fuzzy, format=format)
    try:
        return predicate(record)
    except _UNREADABLE as exc:
        raise _unreadable(0, record, query, exc) from None


def filter_records(
    records: Iterable[Any], query: SearchQuery, *, fuzzy: bool = False, format: RecordFormat = "naturalized"
) -> list[Any]:
    """The records that match, then ``offset`` and ``limit`` applied (QIDO pages after filtering).

    A record that cannot be read (records come from backends) is a :class:`MalformedResponseError`."""
    predicate = compile_matcher(query, fuzzy=fuzzy, format=format)
    wanted = None if query.limit is None else query.offset + query.limit
    matched: list[Any] = []
    index, record = -1, None
    try:
        for index, record in enumerate(records):  # noqa: B007 - named by the error below
            if predicate(record):
                matched.append(record)
                if wanted is not None and len(matched) >= wanted:
                    break  # enough for the page: the rest need not be looked at
    except _UNREADABLE as exc:
        raise _unreadable(index, record, query, exc) from None
    return matched[query.offset :] if query.offset else matched
