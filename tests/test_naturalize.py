"""Naturalization against pydicom's own JSON and back, on real files shipped with pydicom."""

from __future__ import annotations

from typing import Any

import pydicom
import pytest
from datasources.errors import DatasetError, MalformedResponseError
from datasources.naturalize import (
    denaturalize,
    from_pydicom,
    is_tag,
    keyword_for_tag,
    naturalize,
    naturalize_many,
    tag_for_keyword,
    to_pydicom,
    vr_for_keyword,
)
from pydicom.data import get_testdata_file

REAL_FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "nested_priv_SQ.dcm", "waveform_ecg.dcm"]


def bulk(element: Any) -> str:
    return f"bulk/{element.tag:08X}"


@pytest.mark.parametrize("name", REAL_FILES)
def test_round_trip_is_exact_on_real_files(name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name))
    as_json = ds.to_json_dict(bulk_data_threshold=256, bulk_data_element_handler=bulk)
    natural = naturalize(as_json)
    assert denaturalize(natural) == dict(sorted(as_json.items()))


def test_keywords_values_and_references() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    natural = from_pydicom(ds, bulk_data_uri=bulk)
    assert natural["PatientName"] == {"Alphabetic": str(ds.PatientName)}  # PN kept whole
    assert natural["Modality"] == "CT"  # one value unwrapped
    assert natural["ImagePositionPatient"] == [float(v) for v in ds.ImagePositionPatient]  # several: a list
    assert natural["PixelData"] == {"BulkDataURI": "bulk/7FE00010"}  # a reference, never dropped
    private = [k for k in natural if is_tag(k) and int(k[:4], 16) % 2 == 1]
    assert private, "CT_small has private tags; they must be kept under their tag"
    for key in private:
        assert key in natural["_vrMap"]  # their VR is recorded, so denaturalize is exact
    seq = from_pydicom(pydicom.dcmread(get_testdata_file("rtplan.dcm")))
    beams = seq["BeamSequence"]
    assert isinstance(beams, list) and isinstance(beams[0], dict) and "BeamNumber" in beams[0]


def test_empty_and_inline_values() -> None:
    natural = naturalize(
        {
            "00100010": {"vr": "PN"},
            "00431028": {"vr": "OB", "InlineBinary": "AAEC"},
            "00080005": {"vr": "CS", "Value": ["ISO_IR 100", "ISO_IR 192"]},
            "00081140": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}]},
        }
    )
    assert natural["PatientName"] is None
    assert natural["00431028"] == {"InlineBinary": "AAEC"}
    assert natural["SpecificCharacterSet"] == ["ISO_IR 100", "ISO_IR 192"]
    assert natural["ReferencedImageSequence"] == [{"ReferencedSOPInstanceUID": "1.2.3"}]  # one item, still a list


def test_lower_case_tags_and_malformed_input() -> None:
    assert naturalize({"0020000d": {"vr": "UI", "Value": ["1.2"]}}) == {"StudyInstanceUID": "1.2"}
    with pytest.raises(MalformedResponseError):
        naturalize_many([{"PatientName": "x"}])
    with pytest.raises(MalformedResponseError):
        naturalize_many([{"00100010": "not an element"}])


def test_denaturalize_from_hand_written_dicts() -> None:
    out = denaturalize(
        {
            "PatientName": "DOE^JOHN",
            "Rows": 8,
            "url": "dicomweb:x",
            "imageId": "wadors:y",
            "ReferencedImageSequence": {"ReferencedSOPInstanceUID": "1.2"},
        }
    )
    assert out["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JOHN"}]}
    assert out["00280010"] == {"vr": "US", "Value": [8]}
    assert out["00081140"]["Value"] == [{"00081155": {"vr": "UI", "Value": ["1.2"]}}]
    assert list(out) == sorted(out)
    with pytest.raises(DatasetError, match="PatientNmae"):
        denaturalize({"PatientNmae": "typo"})
    assert denaturalize({"PatientNmae": "typo"}, skip_unknown=True) == {}


def test_to_pydicom_matches_the_original() -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"), stop_before_pixels=True)
    back = to_pydicom(from_pydicom(ds))
    for element in ds:
        assert back[element.tag].value == element.value, element.keyword


def test_dictionary_lookups() -> None:
    assert keyword_for_tag("00100010") == "PatientName"
    assert keyword_for_tag("(0010,0010)") == "PatientName"
    assert keyword_for_tag(0x0020000D) == "StudyInstanceUID"
    assert keyword_for_tag("00291010") is None
    assert tag_for_keyword("ModalitiesInStudy") == "00080061"
    assert tag_for_keyword("NoSuchKeyword") is None
    assert vr_for_keyword("PatientName") == "PN"
