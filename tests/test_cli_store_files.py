"""``datasources store`` with the files people really have: no preamble, no Part-10 header, truncated, duplicated.

Real files (pydicom's CT_small, JPEG 2000 and RT plan test files) go into a real Orthanc; what
Orthanc holds afterwards is compared with what was sent, byte for byte for the pixel data.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from datasources.cli import main
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from test_cli_store import config_file, sops_on_server


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _bare(ds: pydicom.Dataset) -> bytes:
    """``ds`` as a headerless dataset: implicit VR little endian, no preamble, no DICM, no file meta."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    return fp.getvalue()


def _pixels_on_server(url: str, ds: pydicom.Dataset) -> bytes:
    answer = requests.get(
        f"{url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    from datasources import multipart

    parts = multipart.parse(answer.content, answer.headers["Content-Type"])
    return pydicom.dcmread(io.BytesIO(parts[0].content)).PixelData


def test_files_without_preamble_and_bare_datasets_are_stored_and_said_so(
    capsys: pytest.CaptureFixture[str], orthanc_empty: Any, tmp_path: Path
) -> None:
    ct_path = get_testdata_file("CT_small.dcm")
    j2k_path = get_testdata_file("JPEG2000.dcm")
    ct = pydicom.dcmread(ct_path)
    j2k = pydicom.dcmread(j2k_path)
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "a-no-preamble.dcm").write_bytes(Path(j2k_path).read_bytes()[128:])  # starts with DICM
    (folder / "b-bare.dcm").write_bytes(_bare(ct))
    config = config_file(tmp_path, orthanc_empty.dicomweb_url)
    code, out, err = run(capsys, "store", str(folder), "--config", str(config), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["files"], report["stored"], report["failed"]) == (2, 2, 0)
    rows = {Path(r["file"]).name: r for r in report["instances"]}
    assert "without its 128-byte preamble" in rows["a-no-preamble.dcm"]["reason"]
    assert "without a Part-10 header" in rows["b-bare.dcm"]["reason"]
    assert rows["b-bare.dcm"]["SOPInstanceUID"] == ct.SOPInstanceUID
    url = orthanc_empty.dicomweb_url
    assert sops_on_server(url, ct.StudyInstanceUID) == {ct.SOPInstanceUID}
    assert sops_on_server(url, j2k.StudyInstanceUID) == {j2k.SOPInstanceUID}
    assert _pixels_on_server(url, ct) == ct.PixelData
    assert _pixels_on_server(url, j2k) == j2k.PixelData  # JPEG 2000 fragments, unchanged
    # the table says it too
    code, out, _ = run(capsys, "store", str(folder / "b-bare.dcm"), "--config", str(config))
    assert code == 0 and "Part-10" in out


def test_truncated_unparsable_and_duplicate_files_are_refused_by_name_and_never_counted(
    capsys: pytest.CaptureFixture[str], orthanc_empty: Any, tmp_path: Path
) -> None:
    good = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    ct = pydicom.dcmread(io.BytesIO(good))
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "1-good.dcm").write_bytes(good)
    (folder / "2-truncated.dcm").write_bytes(good[:-3000])  # same SOP Instance UID, pixel data cut short
    (folder / "3-copy.dcm").write_bytes(good)  # the same instance again
    (folder / "4-garbage.dcm").write_bytes(b"\x00\x01 not a dataset " * 40)
    (folder / "5-rtplan-truncated.dcm").write_bytes(Path(get_testdata_file("rtplan_truncated.dcm")).read_bytes())
    config = config_file(tmp_path, orthanc_empty.dicomweb_url)
    code, out, err = run(capsys, "store", str(folder), "--config", str(config), "--json")
    assert code == 1
    report = json.loads(out)
    assert (report["files"], report["stored"], report["failed"]) == (5, 1, 4), report
    rows = {Path(r["file"]).name: r for r in report["instances"]}
    assert rows["1-good.dcm"]["status"] == "stored"
    assert rows["2-truncated.dcm"]["status"] == "failed" and "truncated" in rows["2-truncated.dcm"]["reason"]
    assert "PixelData" in rows["2-truncated.dcm"]["reason"]
    assert rows["3-copy.dcm"]["status"] == "failed" and "duplicate SOP Instance UID" in rows["3-copy.dcm"]["reason"]
    assert "1-good.dcm" in rows["3-copy.dcm"]["reason"]
    assert rows["4-garbage.dcm"]["status"] == "failed" and "not DICOM" in rows["4-garbage.dcm"]["reason"]
    assert rows["5-rtplan-truncated.dcm"]["status"] == "failed"
    assert "4 of 5 instances were not stored" in err
    # what Orthanc holds is the good file, whole
    assert sops_on_server(orthanc_empty.dicomweb_url, ct.StudyInstanceUID) == {ct.SOPInstanceUID}
    assert _pixels_on_server(orthanc_empty.dicomweb_url, ct) == ct.PixelData
