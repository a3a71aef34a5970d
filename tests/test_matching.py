"""The QIDO matching rules, one row per rule, in both record formats."""

from __future__ import annotations

from typing import Any

import pytest
from datasources.errors import InvalidQueryError
from datasources.matching import compile_matcher, filter_records, matches
from datasources.naturalize import denaturalize
from datasources.query import parse_search

RECORD: dict[str, Any] = {
    "StudyInstanceUID": "1.2.840.1",
    "PatientName": {"Alphabetic": "LEE^ANNA^K"},
    "PatientID": "PAT0001",
    "StudyDate": "20190412",
    "StudyTime": "091500.25",
    "StudyDescription": "CT CHEST W/O CONTRAST",
    "AccessionNumber": "ACC1001",
    "ModalitiesInStudy": ["CT", "SR"],
    "NumberOfStudyRelatedInstances": 7,
    "ReferringPhysicianName": None,
}

CASES = [
    # (filters, matches?) -- universal matching
    ({}, True),
    ({"PatientName": "*"}, True),
    ({"PatientName": ""}, True),  # empty value: no constraint
    ({"InstitutionName": "*"}, True),  # missing attribute, universal query
    # wildcards, anchored
    ({"PatientName": "LEE*"}, True),
    ({"PatientName": "EE*"}, False),  # x* is a prefix, not a substring (OHIF's static client: substring)
    ({"PatientName": "*ANNA*"}, True),
    ({"PatientName": "L?E^ANNA^K"}, True),
    ({"PatientName": "LEE"}, False),  # exact PN needs the whole name
    ({"PatientName": "lee^anna^k"}, True),  # PN: case-insensitive
    ({"StudyDescription": "ct chest*"}, True),  # LO: case-insensitive, spaces kept
    ({"AccessionNumber": "acc1001"}, True),  # SH: case-insensitive
    ({"StudyInstanceUID": "1.2.840.1"}, True),
    ({"StudyInstanceUID": "1.2.840.10"}, False),
    # lists: backslash, python list, comma for UIDs and code strings
    ({"StudyInstanceUID": "9.9\\1.2.840.1"}, True),  # OHIF compares the whole string
    ({"StudyInstanceUID": ["9.9", "1.2.840.1"]}, True),
    ({"StudyInstanceUID": "9.9,1.2.840.1"}, True),
    ({"ModalitiesInStudy": "MR\\SR"}, True),  # any of several, against a multi-valued attribute
    ({"ModalitiesInStudy": "MR"}, False),
    ({"ModalitiesInStudy": "ct"}, True),
    ({"StudyDescription": "MR*\\CT*"}, True),
    # dates and times: ranges open on either side, inclusive
    ({"StudyDate": "20190412"}, True),  # a date without a range: exact
    ({"StudyDate": "20190413"}, False),
    ({"StudyDate": "20190101-20191231"}, True),
    ({"StudyDate": "20190412-20190412"}, True),
    ({"StudyDate": "20190413-"}, False),
    ({"StudyDate": "-20190412"}, True),
    ({"StudyDate": "20200101-20201231\\20190101-20191231"}, True),
    ({"StudyTime": "080000-100000"}, True),
    ({"StudyTime": "0915-0916"}, True),
    ({"StudyTime": "100000-"}, False),
    # numbers compare numerically
    ({"NumberOfStudyRelatedInstances": "7"}, True),
    ({"NumberOfStudyRelatedInstances": "7.0"}, True),
    ({"NumberOfStudyRelatedInstances": "8"}, False),
    # missing or empty attribute: no match for a non-universal query
    ({"InstitutionName": "GENERAL*"}, False),
    ({"ReferringPhysicianName": "SMITH*"}, False),
    # all filters must match
    ({"PatientName": "LEE*", "StudyDate": "2020-"}, False),
    ({"PatientName": "LEE*", "ModalitiesInStudy": "CT"}, True),
    # a value holding a backslash in the record (a multi-valued string written by hand)
    ({"AccessionNumber": "ACC1001"}, True),
]


@pytest.mark.parametrize(("filters", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
@pytest.mark.parametrize("record_format", ["naturalized", "dicom_json"])
def test_rule(filters: dict[str, Any], expected: bool, record_format: str) -> None:
    q = parse_search("study", filters)
    record = RECORD if record_format == "naturalized" else denaturalize(RECORD)
    assert matches(record, q, format=record_format) is expected  # type: ignore[arg-type]


def test_backslash_in_a_record_string_is_several_values() -> None:
    record = {"ModalitiesInStudy": "CT\\MR"}
    assert matches(record, parse_search("study", ModalitiesInStudy="MR"))
    assert not matches(record, parse_search("study", ModalitiesInStudy="US"))


def test_fuzzy_person_names() -> None:
    q = parse_search("study", PatientName="ann lee", fuzzymatching=True)
    assert matches(RECORD, q)
    assert not matches(RECORD, parse_search("study", PatientName="ann lee"))
    assert matches(RECORD, parse_search("study", PatientName="an"), fuzzy=True)
    assert not matches(RECORD, parse_search("study", PatientName="bob"), fuzzy=True)


def test_sequence_paths() -> None:
    record = {"ProcedureCodeSequence": [{"CodeValue": "X1"}, {"CodeValue": "Y2"}]}
    assert matches(record, parse_search("study", {"ProcedureCodeSequence.CodeValue": "Y*"}))
    assert not matches(record, parse_search("study", {"ProcedureCodeSequence.CodeValue": "Z*"}))
    json_record = denaturalize(record)
    assert matches(json_record, parse_search("study", {"ProcedureCodeSequence.CodeValue": "X1"}), format="dicom_json")


def test_limit_and_offset_apply_after_filtering() -> None:
    records = [{"PatientID": f"P{i:03d}", "Modality": "CT" if i % 2 else "MR"} for i in range(20)]
    q = parse_search("series", Modality="CT", limit=3, offset=2)
    assert [r["PatientID"] for r in filter_records(records, q)] == ["P005", "P007", "P009"]
    assert filter_records(records, parse_search("series", Modality="CT", offset=100)) == []


def test_bad_values_are_errors() -> None:
    with pytest.raises(InvalidQueryError, match="numeric"):
        compile_matcher(parse_search("study", NumberOfStudyRelatedInstances="seven"))
    with pytest.raises(InvalidQueryError, match="range"):
        compile_matcher(parse_search("study", StudyDate="2019*"))
    with pytest.raises(ValueError, match="format"):
        compile_matcher(parse_search("study"), format="xml")  # type: ignore[arg-type]
