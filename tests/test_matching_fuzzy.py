"""Fuzzy person-name matching: each query word begins some word of the name, in both formats.

The fast tester (substring refusals, one split per name) is checked against the rule written
out plainly: split both on whitespace, ``^``, ``,`` and ``=``, casefold, and test each query
word as a prefix (``?`` any one character) of some name word.
"""

from __future__ import annotations

import re
from typing import Any

from datasources.errors import DataSourcesError
from datasources.matching import filter_records, matches
from datasources.query import parse_search
from hypothesis import given, settings
from hypothesis import strategies as st

_SPLIT = r"[\s^,=]+"


def reference(query: str, name: str) -> bool:
    def words(text: str) -> list[str]:
        return [w for w in re.split(_SPLIT, text.casefold()) if w]

    for part in query.split("\\"):
        tokens = words(part.replace("*", " "))
        if all(
            any(re.match("".join("." if c == "?" else re.escape(c) for c in t), w, re.DOTALL) for w in words(name))
            for t in tokens
        ):
            return True
    return False


def record(name: str, dicom_json: bool) -> dict[str, Any]:
    if dicom_json:
        return {"00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]}}
    return {"PatientName": {"Alphabetic": name}}


EXAMPLES = [
    ("lee", "LEE^ANNA^K", True),
    ("anna*", "LEE^ANNA^K", True),
    ("^smith", "SMITH^JOHN", True),
    ("lee ann", "LEE^ANNA", True),
    ("ann lee", "LEE^ANNA", True),  # any order
    ("ee", "LEE^ANNA", False),  # a word must begin a name word, not sit inside one
    ("lee bob", "LEE^ANNA", False),  # every query word must be found
    ("j?hn", "SMITH^JOHN", True),
    ("j?n", "SMITH^JOHN", False),
    ("strasse", "STRASSE^ANNA", True),
    ("straße", "STRASSE^ANNA", True),  # casefolded both sides
    ("anna", "LEE\u3000ANNA", True),  # Unicode whitespace separates words
    ("anna", "LEE,ANNA=李^安娜", True),
    ("bob\\anna", "LEE^ANNA", True),  # backslash: any of the values
]


def test_fuzzy_examples_in_both_formats() -> None:
    for query, name, expected in EXAMPLES:
        assert reference(query, name) is expected, (query, name)
        q = parse_search("study", PatientName=query)
        for dicom_json in (False, True):
            fmt = "dicom_json" if dicom_json else "naturalized"
            assert matches(record(name, dicom_json), q, fuzzy=True, format=fmt) is expected, (query, name, fmt)


_ALPHABET = st.sampled_from(list("abAB ^,=?\t\u3000\xa0ßsS"))


@settings(max_examples=400)
@given(
    st.lists(_ALPHABET, min_size=1, max_size=7).map("".join),
    st.lists(st.lists(_ALPHABET.filter(lambda c: c != "?"), max_size=10).map("".join), min_size=1, max_size=4),
)
def test_fuzzy_tester_agrees_with_the_plain_rule(query: str, names: list[str]) -> None:
    try:
        q = parse_search("study", PatientName=query)
    except DataSourcesError:  # a query the parser refuses has nothing to match
        return
    if not q.filters:
        return
    records = [record(n, True) for n in names]
    found = filter_records(records, q, fuzzy=True, format="dicom_json")
    assert [r in found for r in records] == [reference(query, n) for n in names]
