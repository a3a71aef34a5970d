"""Hypothesis: naturalize/denaturalize round-trip well-formed DICOM JSON exactly, and on broken
or arbitrary input raise nothing but ``datasources.errors`` types (issue 11).

Examples are derandomized (tests/conftest.py's ``ci`` profile), 10,000 in CI: the same ones on every run.
Strategies draw from small pools so that 10,000 examples cost seconds, not minutes.
"""

from __future__ import annotations

import contextlib
from typing import Any

from datasources.errors import DataSourcesError
from datasources.naturalize import denaturalize, naturalize_many
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzzbytes import EXAMPLES, Choices

text = st.text("aZ^=*? .\\1é", max_size=5)
# (tag, element) pairs of every shape naturalize knows: VM 1 and 1-n text, numbers, PN, UID,
# private tags, references, empty elements, a VR other than the dictionary's
PAIRS = st.one_of(
    st.builds(lambda v: ("00100020", {"vr": "LO", "Value": v}), st.lists(text, min_size=1, max_size=2)),
    st.builds(lambda v: ("00080061", {"vr": "CS", "Value": v}), st.lists(text, min_size=1, max_size=3)),
    st.builds(lambda v: ("00100010", {"vr": "PN", "Value": [{"Alphabetic": v}]}), text),
    st.builds(lambda v: ("00280010", {"vr": "US", "Value": [v]}), st.integers(0, 65535)),
    st.builds(lambda v: ("00200013", {"vr": "IS", "Value": [v]}), st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda v: ("00180050", {"vr": "DS", "Value": [v]}), st.floats(-1e6, 1e6, allow_nan=False)),
    st.sampled_from(
        [
            ("0020000D", {"vr": "UI", "Value": ["1.2.840.1"]}),
            ("00091001", {"vr": "LO", "Value": ["private"]}),
            ("0011ABCD", {"vr": "UN", "InlineBinary": "AAEC"}),
            ("7FE00010", {"vr": "OB", "BulkDataURI": "http://127.0.0.1/bulk"}),
            ("00081030", {"vr": "LO"}),
            ("00081030", {"vr": "SH", "Value": ["other VR"]}),
        ]
    ),
)


ITEMS = st.lists(PAIRS, max_size=3).map(dict)  # sequence items: one level of nesting is enough here
SEQUENCES = st.lists(ITEMS, min_size=1, max_size=2).map(lambda items: ("00400275", {"vr": "SQ", "Value": items}))
DATASETS = st.lists(PAIRS | SEQUENCES, max_size=5).map(dict)

BAD_KEYS = st.sampled_from(["00100020", "0020000D", "00400275", "zz", "0010002", "", 5, None, "00100020x"])
BAD_VALUES = st.sampled_from(
    [
        "1.2.3",
        5,
        None,
        [],
        {},
        {"vr": 5, "Value": ["x"]},
        {"vr": ["LO"], "Value": ["x"]},
        {"vr": "LO", "Value": {"a": 1}},
        {"vr": "LO", "Value": "abc"},
        {"vr": "LO", "Value": 5},
        {"vr": "SQ", "Value": [1]},
        {"vr": "SQ", "Value": ["x"]},
        {"vr": "SQ", "Value": [[{"a": 1}]]},
        {"vr": "SQ", "Value": {"00100020": {}}},
        {"vr": "PN", "Value": [5]},
        {"Value": [None]},
    ]
)
CORRUPTION = st.none() | st.tuples(BAD_KEYS, BAD_VALUES)


ALPHABET = "aZ^=*? .\\1\u00e9"
BAD_POOL = [
    "1.2.3", 5, None, [], {}, {"vr": 5, "Value": ["x"]}, {"vr": ["LO"], "Value": ["x"]},
    {"vr": "LO", "Value": {"a": 1}}, {"vr": "LO", "Value": "abc"}, {"vr": "LO", "Value": 5},
    {"vr": "SQ", "Value": [1]}, {"vr": "SQ", "Value": ["x"]}, {"vr": "SQ", "Value": [[{"a": 1}]]},
    {"vr": "SQ", "Value": {"00100020": {}}}, {"vr": "PN", "Value": [5]}, {"Value": [None]},
]  # fmt: skip
BAD_KEY_POOL = ["00100020", "0020000D", "00400275", "zz", "0010002", "", 5, None, "00100020x"]


def _pair(c: Choices, depth: int) -> tuple[str, dict[str, Any]]:
    kind = c.below(10 if depth < 3 else 9)
    if kind == 0:
        return "00100020", {"vr": "LO", "Value": [c.text(ALPHABET, 4) for _ in range(1 + c.below(2))]}
    if kind == 1:
        return "00080061", {"vr": "CS", "Value": [c.text(ALPHABET, 3) for _ in range(1 + c.below(3))]}
    if kind == 2:
        return "00100010", {"vr": "PN", "Value": [{"Alphabetic": c.text(ALPHABET, 5)}]}
    if kind == 3:
        return "00280010", {"vr": "US", "Value": [c.below(65536)]}
    if kind == 4:
        return "00200013", {"vr": "IS", "Value": [c.below(65536) - 30000]}
    if kind == 5:
        return "00180050", {"vr": "DS", "Value": [(c.below(65536) - 30000) / 8]}
    if kind == 6:
        return f"00{c.pick('0123456789ABCDEF')}9{c.below(65536):04X}", {"vr": "LO", "Value": [c.text(ALPHABET, 3)]}
    if kind == 7:
        return c.pick(["0011ABCD", "7FE00010"]), {
            "vr": c.pick(["UN", "OB"]),
            c.pick(["InlineBinary", "BulkDataURI"]): "AAEC",
        }
    if kind == 8:
        return "00081030", c.pick([{"vr": "LO"}, {"vr": "SH", "Value": ["other VR"]}])
    return "00400275", {"vr": "SQ", "Value": [_dataset(c, depth + 1) for _ in range(1 + c.below(2))]}


def _dataset(c: Choices, depth: int = 0) -> dict[str, Any]:
    return dict(_pair(c, depth) for _ in range(c.below(5)))


@settings(max_examples=EXAMPLES)
@given(st.binary(max_size=96))
def test_generated_dicom_json_round_trips_or_raises_a_typed_error(data: bytes) -> None:
    c = Choices(data)
    datasets = [_dataset(c) for _ in range(1 + c.below(2))]
    corruption = (c.pick(BAD_KEY_POOL), c.pick(BAD_POOL)) if c.flag() else None
    _check(datasets, corruption)


@settings(max_examples=EXAMPLES // 20)
@given(st.lists(DATASETS, min_size=1, max_size=2), CORRUPTION)
def test_dicom_json_round_trips_or_raises_a_typed_error(datasets: list[dict[str, Any]], corruption: Any) -> None:
    _check(datasets, corruption)


def _check(datasets: list[dict[str, Any]], corruption: Any) -> None:
    if corruption is None:  # well formed: back exactly as it came
        assert [denaturalize(n) for n in naturalize_many(datasets)] == datasets
        return
    key, value = corruption
    broken = [*datasets[:-1], {**datasets[-1], key: value}]
    try:
        natural = naturalize_many(broken)
    except DataSourcesError as exc:
        assert f"dataset {len(broken) - 1}" in str(exc)
        return
    for item in natural:  # a corruption that naturalize accepts still denaturalizes or is typed
        with contextlib.suppress(DataSourcesError):
            denaturalize(item)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
NATURAL_KEYS = st.sampled_from(
    ["PatientID", "PatientName", "StudyDate", "RequestAttributesSequence", "_vrMap", "url", "0011ABCD", "Nonsense", 7]
)


@settings(max_examples=EXAMPLES // 40)
@given(st.dictionaries(NATURAL_KEYS, json_values, max_size=4), st.booleans())
def test_any_naturalized_value_denaturalizes_or_raises_a_typed_error(natural: dict[Any, Any], skip: bool) -> None:
    try:
        out = denaturalize(natural, skip_unknown=skip)
    except DataSourcesError:
        return
    assert all(isinstance(k, str) and len(k) == 8 for k in out)
