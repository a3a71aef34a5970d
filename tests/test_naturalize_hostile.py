"""naturalize/denaturalize against hostile and broken data: bounded caches, typed errors (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest
from datasources import naturalize as nat
from datasources.errors import DatasetError, MalformedResponseError
from datasources.naturalize import CACHE_LIMIT, cache_sizes, denaturalize, naturalize, naturalize_many


def test_new_private_tags_in_every_dataset_do_not_grow_the_caches() -> None:
    before = len(nat._tag_table())
    for i in range(100_000):
        group = 0x0009 + 2 * (i % 0x7000)  # odd groups: private
        tags = [f"{group:04X}{0x1000 + i % 0xE000 + k:04X}" for k in range(5)]
        dataset = {tag: {"vr": "LO", "Value": [f"v{i}"]} for tag in tags}
        dataset["00100020"] = {"vr": "LO", "Value": [f"P{i}"]}
        natural = naturalize(dataset)
        natural[f"app{i}"] = "an application field, new each time"
        assert denaturalize(natural) == dict(sorted(dataset.items()))
    sizes = cache_sizes()
    assert sizes["tags"] <= CACHE_LIMIT, sizes
    assert sizes["keys"] <= nat._KEY_CACHE_LIMIT, sizes
    assert len(nat._tag_table()) == before  # the dictionary's table is not grown either


def test_a_recurring_private_tag_is_cached_again_after_a_flood() -> None:
    for i in range(CACHE_LIMIT + 10):
        naturalize({f"0009{i % 0xFFFF:04X}": {"vr": "LO", "Value": ["x"]}, "0011ABCD": {"vr": "LO", "Value": ["y"]}})
    assert "0011ABCD" in nat._MISSES


@pytest.mark.parametrize(
    ("value", "shape"),
    [({"a": 1}, "dict"), ("1.2.3", "str"), (5, "int"), ({"Alphabetic": "DOE"}, "dict")],
)
def test_a_value_that_is_not_a_list_is_a_typed_error_naming_the_tag(value: Any, shape: str) -> None:
    with pytest.raises(MalformedResponseError, match=f"Value of 0020000D is a {shape}, not a list"):
        naturalize({"0020000D": {"vr": "UI", "Value": value}})


@pytest.mark.parametrize(
    "dataset",
    [
        {"0020000D": "1.2.3"},
        {"0008103E": {"vr": ["LO"], "Value": ["x"]}},
        {"00400275": {"vr": "SQ", "Value": ["not an item"]}},
        {"00400275": {"vr": "SQ", "Value": [[1, 2]]}},
        {"not a tag": {"vr": "LO"}},
    ],
)
def test_malformed_dicom_json_is_a_typed_error(dataset: Any) -> None:
    with pytest.raises(MalformedResponseError):
        naturalize(dataset)
    with pytest.raises(MalformedResponseError, match="dataset 1"):
        naturalize_many([{}, dataset])


def test_deeply_nested_dicom_json_is_a_typed_error() -> None:
    dataset: dict[str, Any] = {"00100020": {"vr": "LO", "Value": ["P"]}}
    for _ in range(10_000):
        dataset = {"00400275": {"vr": "SQ", "Value": [dataset]}}
    with pytest.raises(MalformedResponseError, match="nested deeper than"):
        naturalize(dataset)
    shallow: dict[str, Any] = {"00100020": {"vr": "LO", "Value": ["P"]}}
    for _ in range(20):
        shallow = {"00400275": {"vr": "SQ", "Value": [shallow]}}
    assert denaturalize(naturalize(shallow)) == shallow


def test_deeply_nested_naturalized_datasets_are_a_typed_error() -> None:
    natural: dict[str, Any] = {"PatientID": "P"}
    for _ in range(10_000):
        natural = {"RequestAttributesSequence": [natural]}
    with pytest.raises(DatasetError, match="nested deeper than"):
        denaturalize(natural)
    cyclic: dict[str, Any] = {"PatientID": "P"}
    cyclic["RequestAttributesSequence"] = [cyclic]
    with pytest.raises(DatasetError, match="nested deeper than"):
        denaturalize(cyclic)


@pytest.mark.parametrize(
    ("natural", "message"),
    [
        ({1: "x"}, "a key of a naturalized dataset is a string"),
        ({("PatientID",): "x"}, "a key of a naturalized dataset is a string"),
        ({"PatientID": "P", "_vrMap": 5}, "_vrMap must map keywords to VR strings"),
        ({"PatientID": "P", "_vrMap": {"PatientID": 3}}, "_vrMap must map keywords to VR strings"),
        ({"RequestAttributesSequence": ["not an item"]}, "RequestAttributesSequence.: a sequence item is a mapping"),
        ({"RequestAttributesSequence": [{"Nonsense": 1}]}, "RequestAttributesSequence.Nonsense"),
        ({"StudyDescription": {"x": 1}}, "StudyDescription: a LO value cannot be a mapping"),
    ],
)
def test_malformed_naturalized_values_are_typed_errors(natural: Any, message: str) -> None:
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(".", r"\.")):
        denaturalize(natural)
