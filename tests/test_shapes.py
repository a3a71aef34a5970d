"""The per-shape plans (datasources.shapes) give exactly what element-by-element denaturalize gives.

The reference is the same call with the plans switched off. Compared: the DICOM JSON dicts, the
bytes of the gateway's metadata answer (BulkDataURIs rewritten, in sequences too), and the error
(type and message) on bad input; each case twice, so the second call goes through the plan made
by the first. Data: pydicom's own files, and Hypothesis over every shape a naturalized value takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pydicom
import pytest
from datasources import shapes
from datasources.errors import DataSourcesError
from datasources.gateway.datasets import bulk_rewrite, metadata_datasets, metadata_json
from datasources.naturalize import denaturalize, from_pydicom
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from support.fuzzbytes import EXAMPLES

FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "nested_priv_SQ.dcm", "waveform_ecg.dcm", "JPEG2000.dcm"]
ROOT = "http://127.0.0.1:8042/orthanc/dicom-web"


@contextmanager
def element_by_element() -> Iterator[None]:
    """The reference: denaturalize and the metadata answer with no plan."""
    saved = shapes.denaturalize_planned, shapes.dicom_json_planned
    shapes.denaturalize_planned = lambda *args: None  # type: ignore[assignment]
    shapes.dicom_json_planned = lambda *args: None  # type: ignore[assignment]
    import datasources.gateway.datasets as datasets

    saved_in_gateway = datasets.dicom_json_planned
    datasets.dicom_json_planned = shapes.dicom_json_planned
    try:
        yield
    finally:
        shapes.denaturalize_planned, shapes.dicom_json_planned = saved
        datasets.dicom_json_planned = saved_in_gateway


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except DataSourcesError as exc:
        return (type(exc).__name__, str(exc))


def same_as_reference(call: Callable[[], Any]) -> Any:
    with element_by_element():
        expected = outcome(call)
    assert outcome(call) == expected  # the plan is made here
    assert outcome(call) == expected  # and used here
    return expected


def instances_of(name: str) -> list[dict[str, Any]]:
    ds = pydicom.dcmread(get_testdata_file(name))
    natural = from_pydicom(ds, bulk_data_uri=lambda e: f"http://backend/bulk/{e.tag:08X}", bulk_data_threshold=64)
    natural.update(StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.4", SOPInstanceUID="1.2.3.4.5")
    natural.update(url="dicomweb:x", imageId="wadors:x", wadoRoot="http://backend")  # application fields
    return [natural, {**natural, "SOPInstanceUID": "1.2.3.4.6"}]


@pytest.mark.parametrize("name", FILES)
def test_real_files_denaturalize_and_answer_the_same(name: str) -> None:
    instances = instances_of(name)
    for instance in instances:
        kind, value = same_as_reference(lambda instance=instance: denaturalize(instance, skip_unknown=True))
        assert kind == "ok" and value
    kind, body = same_as_reference(lambda: metadata_json(instances, ROOT, "1.2.3"))
    assert kind == "ok"
    assert body == orjson.dumps(metadata_datasets(instances, ROOT, "1.2.3"))
    answer = orjson.loads(body)
    assert [a["00080018"]["Value"] for a in answer] == [["1.2.3.4.5"], ["1.2.3.4.6"]]
    uris = [e["BulkDataURI"] for a in answer for e in a.values() if "BulkDataURI" in e]
    assert all(uri.startswith(f"{ROOT}/studies/1.2.3/series/") and "/bulkdata/" in uri for uri in uris)


def test_plans_follow_each_dataset_not_the_first_of_its_keys() -> None:
    """Same keys, other value classes or another _vrMap: another plan, never the first one's output."""
    first = {"PatientID": "A", "ImageType": ["X", "Y"], "PixelPaddingValue": 5, "00091001": "p"}
    first["_vrMap"] = {"00091001": "LO"}
    second = {"PatientID": None, "ImageType": "X", "PixelPaddingValue": -5, "00091001": "p"}
    second["_vrMap"] = {"00091001": "SH"}
    third = {"PatientID": 7, "ImageType": None, "PixelPaddingValue": [1, -2], "00091001": "p"}
    fourth = {**first, "_vrMap": {"00091001": "SH"}}  # the keys and classes of the first, another VR
    for dataset in (first, second, third, first, fourth):
        same_as_reference(lambda dataset=dataset: denaturalize(dataset))
    assert denaturalize(fourth)["00091001"] == {"vr": "SH", "Value": ["p"]}
    assert denaturalize(second)["00280120"] == {"vr": "SS", "Value": [-5]}
    assert denaturalize(third)["00091001"] == {"vr": "UN", "Value": ["p"]}
    assert denaturalize(first)["00091001"] == {"vr": "LO", "Value": ["p"]}


def test_bulk_data_in_sequences_points_at_the_gateway() -> None:
    instance = {
        "StudyInstanceUID": "1.2",
        "SeriesInstanceUID": "1.2.3",
        "SOPInstanceUID": "1.2.3.4",
        "PixelData": {"BulkDataURI": "http://backend/px"},
        "IconImageSequence": [{"PixelData": {"BulkDataURI": "http://backend/icon"}, "Rows": 8}],
        "_vrMap": {"PixelData": "OW"},
    }
    body = same_as_reference(lambda: metadata_json([instance, instance], ROOT, "1.2"))[1]
    answer = orjson.loads(body)
    base = f"{ROOT}/studies/1.2/series/1.2.3/instances/1.2.3.4/bulkdata"
    assert answer[1]["7FE00010"] == {"vr": "OW", "BulkDataURI": f"{base}/7FE00010"}
    assert answer[1]["00880200"]["Value"][0]["7FE00010"]["BulkDataURI"] == f"{base}/00880200/0/7FE00010"


text = st.text("aZ^ 1é", max_size=3)
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | text
values = st.recursive(
    scalars | st.binary(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(
            st.sampled_from(["Alphabetic", "BulkDataURI", "InlineBinary", "Rows", "x"]), inner, max_size=2
        )
    ),
    max_leaves=5,
)
KEYS = st.sampled_from(
    [
        "PatientID",
        "PatientName",
        "ImageType",
        "PixelPaddingValue",
        "PixelData",
        "ReferencedSeriesSequence",
        "SeriesInstanceUID",
        "0020000E",
        "00091001",
        "0011ABCD",
        "url",
        "Nonsense",
    ]
)
VR_NAMES = st.sampled_from(["LO", "SH", "UN", "OB", "%b"])  # "%b": a VR is text to the template too
VR_MAPS = st.none() | st.dictionaries(KEYS, VR_NAMES, max_size=2) | st.just({"X": 1})


@settings(max_examples=EXAMPLES // 20)
@given(st.lists(st.dictionaries(KEYS, values, max_size=6), min_size=1, max_size=3), VR_MAPS, st.booleans())
def test_any_naturalized_dataset_gives_what_element_by_element_gives(
    datasets: list[dict[str, Any]], vr_map: Any, skip: bool
) -> None:
    for dataset in datasets:
        if vr_map is not None:
            dataset["_vrMap"] = vr_map
        same_as_reference(lambda dataset=dataset: denaturalize(dataset, skip_unknown=skip))

    def answer() -> bytes:
        try:
            return metadata_json(datasets, ROOT, "1.2")
        except (orjson.JSONEncodeError, TypeError) as exc:  # what orjson cannot write, either way
            return f"{type(exc).__name__}".encode()

    same_as_reference(answer)


def test_bulk_rewrite_reference_is_what_the_answer_holds() -> None:
    instance = instances_of("CT_small.dcm")[0]
    dataset = denaturalize(instance, skip_unknown=True)
    bulk_rewrite(dataset, f"{ROOT}/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5")
    assert orjson.loads(metadata_json([instance], ROOT, "1.2.3")) == [dataset]
    assert shapes.plan_counts()["denaturalize"] >= 1


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_qido_rows_are_written_as_the_dicts_would_be(level: str) -> None:
    from datasources.gateway.qido import _qido_json, _qido_row

    row = {
        "StudyInstanceUID": "1.2",
        "SeriesInstanceUID": "1.2.3",
        "SOPInstanceUID": "1.2.3.4",
        "PatientName": {"Alphabetic": "DOE^J"},
        "ModalitiesInStudy": ["CT", "SR"],
        "StudyDescription": None,
        "PixelData": {"BulkDataURI": "http://backend/px"},  # dropped unless at the instance level
        "RequestAttributesSequence": [{"ScheduledProcedureStepID": "S1", "PixelData": {"BulkDataURI": "http://b/x"}}],
        "url": "app field",
    }
    without_bulk = {k: v for k, v in row.items() if k != "PixelData"}
    for each in (row, without_bulk, row, without_bulk):
        for study, series in ((None, None), ("1.2", None), ("1.2", "1.2.3")):
            expected = orjson.dumps(_qido_row(each, level, None, ROOT, study, series))
            assert _qido_json(each, level, None, ROOT, study, series) == expected
            answer = orjson.loads(expected)
            nested = answer["00400275"]["Value"][0]
            assert ("7FE00010" in nested) == (level == "instance")  # pointed at the gateway, or left out
            if level == "instance":
                assert nested["7FE00010"]["BulkDataURI"].startswith(f"{ROOT}/studies/1.2/series/1.2.3/instances/")
