"""Hypothesis: query parsing and matching take any filters and any records, and raise nothing
but ``datasources.errors`` types; wildcard matching agrees with a regular expression (issue 11).

Examples are derandomized (tests/conftest.py's ``ci`` profile), 10,000 in CI; each is read from one byte
string (tests/support/fuzzbytes.py) so that 10,000 of them cost seconds.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from datasources.errors import DataSourcesError
from datasources.matching import filter_records, matches
from datasources.query import parse_search
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzzbytes import EXAMPLES, Choices

ALPHABET = "aZ1*?\\,-.^ \u00e9"
KEYS = [
    "PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "ModalitiesInStudy",
    "StudyDescription", "NumberOfStudyRelatedInstances", "AccessionNumber", "patientName", "startDate",
    "endDate", "00100020", "0011ABCD", "(0010,0020)", "RequestAttributesSequence.PatientID", "limit",
    "offset", "fuzzymatching", "includefield", "pageNumber", "resultsPerPage", "Nonsense", "patientname",
    5, ("t",), None,
]  # fmt: skip
LEVELS = ["study", "series", "instance", "studies", "bogus", 3, None]
ODD = [
    float("inf"), float("-inf"), float("nan"), True, None, "", 10**30, -1, 2.5, object(), b"5",
    dt.date(2020, 1, 2), dt.datetime(2020, 1, 2, 3, 4), dt.time(1, 2), "20200101-", "-20201231", "2020-01-02",
]  # fmt: skip
RECORD_KEYS = ["PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "ModalitiesInStudy", "StudyDescription"]
RECORD_KEYS += ["NumberOfStudyRelatedInstances", "RequestAttributesSequence", "0011ABCD"]
TAGS = ["00100010", "00100020", "0020000D", "00080020", "00080061", "00081030", "00201208", "00400275", "0011abcd"]


def _value(c: Choices, depth: int = 0) -> Any:
    kind = c.below(6 if depth < 2 else 4)
    if kind == 0:
        return c.text(ALPHABET, 6)
    if kind == 1:
        return c.pick(ODD)
    if kind == 2:
        return c.below(65536) - 100
    if kind == 3:
        return {"Alphabetic": c.text(ALPHABET, 5)}
    if kind == 4:
        return [_value(c, depth + 1) for _ in range(c.below(3))]
    return {c.pick(RECORD_KEYS): _value(c, depth + 1)}


def _record(c: Choices, dicom_json: bool) -> Any:
    if c.below(16) == 0:
        return c.pick(["not a record", 5, None, ["x"]])
    if dicom_json:
        out: dict[str, Any] = {}
        for _ in range(c.below(4)):
            element: Any = {"vr": c.pick(["PN", "LO", "UI", "DA", "CS", "IS", "SQ"])}
            if c.flag():
                element["Value"] = _value(c) if c.below(8) == 0 else [_value(c, 1) for _ in range(c.below(3))]
            out[c.pick(TAGS)] = element if c.below(12) else _value(c)
        return out
    return {c.pick(RECORD_KEYS): _value(c) for _ in range(c.below(4))}


def _reference(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


@settings(max_examples=EXAMPLES)
@given(st.binary(max_size=96))
def test_any_query_over_any_records_parses_and_matches_or_raises_a_typed_error(data: bytes) -> None:
    c = Choices(data)
    # the wildcard matcher against a backtracking regex, on small alphabets
    pattern, value = c.text("ab*?", 7), c.text("ab", 9)
    if pattern.strip("*") and value:
        expected = bool(_reference(pattern).fullmatch(value))
        assert matches({"StudyDescription": value}, parse_search("study", StudyDescription=pattern)) is expected

    filters = {c.pick(KEYS): _value(c) for _ in range(c.below(4))}
    level = c.pick(LEVELS)
    try:
        query = parse_search(level, filters)  # type: ignore[arg-type]
    except DataSourcesError:
        return
    dicom_json = c.flag()
    records = [_record(c, dicom_json) for _ in range(c.below(4))]
    try:
        found = filter_records(records, query, fuzzy=c.flag(), format="dicom_json" if dicom_json else "naturalized")
    except DataSourcesError:
        return
    assert all(any(r is f for r in records) for f in found)
    assert query.limit is None or len(found) <= query.limit
