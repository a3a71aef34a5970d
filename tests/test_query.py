"""Parsing search filters: keywords, tags, OHIF's names, paging, and the errors."""

from __future__ import annotations

import datetime as dt

import pytest
from datasources.errors import InvalidQueryError
from datasources.query import parse_search


def test_keywords_tags_and_ohif_names() -> None:
    q = parse_search(
        "study",
        {"patientName": "LEE*", "00100020": "PAT1", "modalitiesInStudy": ["CT", "MR"]},
        AccessionNumber=123,
        ReferringPhysicianName=None,  # None: no constraint
        StudyDescription="",
    )
    assert q.filters == {
        "PatientName": "LEE*",
        "PatientID": "PAT1",
        "ModalitiesInStudy": ["CT", "MR"],
        "AccessionNumber": "123",
    }
    assert q.to_qido_params() == [
        ("PatientName", "LEE*"),
        ("PatientID", "PAT1"),
        ("ModalitiesInStudy", "CT\\MR"),
        ("AccessionNumber", "123"),
    ]


def test_private_tags_and_sequence_paths() -> None:
    q = parse_search("series", {"00291010": "x", "ProcedureCodeSequence.CodeValue": "Y"})
    assert q.filters == {"00291010": "x", "ProcedureCodeSequence.CodeValue": "Y"}


def test_dates_from_ohif_start_and_end() -> None:
    assert parse_search("study", startDate="2020-01-01", endDate="20201231").filters == {
        "StudyDate": "20200101-20201231"
    }
    assert parse_search("study", startDate=dt.date(2021, 3, 4)).filters == {"StudyDate": "20210304-"}
    assert parse_search("study", StudyDate=dt.date(2021, 3, 4)).filters == {"StudyDate": "20210304"}
    with pytest.raises(InvalidQueryError, match="not both"):
        parse_search("study", startDate="20200101", StudyDate="20200101")
    with pytest.raises(InvalidQueryError, match="YYYYMMDD"):
        parse_search("study", endDate="yesterday")


def test_paging_and_options() -> None:
    q = parse_search("study", limit="10", offset=5, fuzzymatching="true", includefield="00081030,Modality")
    assert (q.limit, q.offset, q.fuzzymatching) == (10, 5, True)
    assert q.includefield == ("StudyDescription", "Modality")
    assert parse_search("study", includefield=["all"]).includefield == ("all",)
    assert parse_search("study", resultsPerPage=25, pageNumber=3).offset == 50
    assert q.without_paging().limit is None and q.without_paging().offset == 0
    assert ("limit", "10") in q.to_qido_params() and ("fuzzymatching", "true") in q.to_qido_params()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patientname": "x"}, "did you mean 'PatientName'"),
        ({"PatientNam": "x"}, "did you mean 'PatientName'"),
        ({"NoSuchThing": "x"}, "not a DICOM keyword"),
        ({"limit": -1}, "limit must be 0 or more"),
        ({"limit": "ten"}, "limit must be a whole number"),
        ({"limit": True}, "limit must be a whole number"),
        ({"offset": 1.5}, "offset must be a whole number"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching must be true or false"),
        ({"includefield": "Nope"}, "not a DICOM keyword"),
        ({"PatientName": object()}, "must be text"),
        ({"pageNumber": 2}, "pageNumber"),
    ],
)
def test_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        parse_search("study", **kwargs)


def test_level_and_filters_type() -> None:
    with pytest.raises(InvalidQueryError, match="level"):
        parse_search("patient")
    with pytest.raises(InvalidQueryError, match="mapping"):
        parse_search("study", ["PatientName"])  # type: ignore[arg-type]
    assert parse_search("instances").level == "instance"
