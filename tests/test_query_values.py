"""A bad date, time, UID or number is one typed error naming the key, whichever spelling and whichever path.

The check lives in ``datasources.query.parse_search``, which every source's search, the
command line and the gateway go through; this file shows each path says the same.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from datasources import Host
from datasources.errors import InvalidQueryError, InvalidQueryValueError
from datasources.query import parse_search

GOOD = [
    ({"StudyDate": "20200101"}, {"StudyDate": "20200101"}),
    ({"StudyDate": "2020-01-01"}, {"StudyDate": "20200101"}),
    ({"StudyDate": "2020-01-01-"}, {"StudyDate": "20200101-"}),
    ({"StudyDate": "-2020-12-31"}, {"StudyDate": "-20201231"}),
    ({"StudyDate": "2020-01-01-2020-12-31"}, {"StudyDate": "20200101-20201231"}),
    ({"startDate": "2020-01-01", "endDate": "20201231"}, {"StudyDate": "20200101-20201231"}),
    ({"StudyDate": "2020-"}, {"StudyDate": "2020-"}),  # a range bounded by a year, as the matcher takes it
    ({"StudyTime": "09:15:00-10:30"}, {"StudyTime": "091500-1030"}),
    ({"StudyTime": "091500.25"}, {"StudyTime": "091500.25"}),
    ({"studyInstanceUid": "1.2.840.10008"}, {"StudyInstanceUID": "1.2.840.10008"}),
    ({"StudyInstanceUID": "1.2.3,1.2.4"}, {"StudyInstanceUID": "1.2.3,1.2.4"}),
    ({"NumberOfStudyRelatedInstances": "7"}, {"NumberOfStudyRelatedInstances": "7"}),
]

BAD = [
    ({"StudyDate": "notadate"}, "StudyDate"),
    ({"StudyDate": "2020-01-01-x"}, "StudyDate"),
    ({"StudyDate": "20201301"}, "StudyDate"),
    ({"StudyDate": "20201231-20200101"}, "StudyDate"),
    ({"00080020": "notadate"}, "00080020"),  # the key named as the caller spelt it
    ({"startDate": "notadate"}, "startDate"),
    ({"endDate": "2020-02-30"}, "endDate"),
    ({"StudyTime": "2599"}, "StudyTime"),
    ({"StudyInstanceUID": "abc"}, "StudyInstanceUID"),
    ({"studyInstanceUid": "1.2.x"}, "studyInstanceUid"),
    ({"NumberOfStudyRelatedInstances": "seven"}, "NumberOfStudyRelatedInstances"),
]


@pytest.mark.parametrize(("given", "expected"), GOOD)
def test_good_values_in_any_spelling_are_normalized(given: dict[str, Any], expected: dict[str, Any]) -> None:
    assert parse_search("study", given).filters == expected


@pytest.mark.parametrize(("given", "key"), BAD)
def test_a_bad_value_names_its_key(given: dict[str, Any], key: str) -> None:
    with pytest.raises(InvalidQueryValueError) as caught:
        parse_search("study", given)
    assert caught.value.key == key and str(caught.value).startswith(f"{key}: ")
    assert isinstance(caught.value, InvalidQueryError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("given", "key"), BAD)
def test_the_python_api_says_the_same(given: dict[str, Any], key: str) -> None:
    ds = Host().get_data_source("sample")
    with pytest.raises(InvalidQueryValueError, match=f"^{key}: "):
        ds.query.studies.search(given)


def test_the_gateway_answers_400_naming_the_key_and_no_server_path() -> None:
    pytest.importorskip("starlette")
    from datasources.gateway import create_app
    from test_gateway_support import served

    with served(create_app(Host())) as server:
        for query, key in (("StudyDate=notadate", "StudyDate"), ("startDate=2020-13-01", "startDate")):
            answer = requests.get(f"{server.url}/dicom-web/studies?{query}", timeout=30)
            assert answer.status_code == 400, answer.text
            assert f"{key}: " in answer.text
        good = requests.get(f"{server.url}/dicom-web/studies?StudyDate=2020-01-01-", timeout=30)
        assert good.status_code == 200 and len(good.json()) > 0
        missing = requests.get(f"{server.url}/dicom-web/studies/9.9.9/metadata", timeout=30)
        assert missing.status_code == 404, missing.text
        assert "9.9.9" in missing.text  # named by UID and source, not by the file the source reads
        assert "sample.json" not in missing.text and "/plugins/" not in missing.text
