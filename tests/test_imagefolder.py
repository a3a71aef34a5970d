"""The imagefolder extension: installed with pip, found through its entry point, mapped into DICOM."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasources import Host, hookimpl
from datasources.errors import NotSupportedError
from datasources.transcode import decode_frame
from datasources.transfer import EXPLICIT_LE, label_of
from datasources_imagefolder.mapping import JPEG_BASELINE
from PIL import Image

NAMESPACE = "imagefolder.dataSourcesModule.imagefolder"
HEADER = "Patient ID,Patient Name,Exam Date,Modality,Description,Body Part,Image Path"
GOOD = [
    "P1,DOE^JANE,2021-03-04,CR,CHEST PA,CHEST,images/p1_chest.png",
    "P1,DOE^JANE,2021-03-04,CR,CHEST PA,CHEST,images/p1_chest_2.png",
    "P1,DOE^JANE,2021-03-04,DX,HAND,HAND,images/p1_hand16.png",
    "P2,ROE^RICHARD,20220115,XC,SKIN LESION,ARM,images/p2_skin.jpg",
]
BAD = [
    "P3,MISSING^FILE,2022-01-01,CR,CHEST,CHEST,images/nope.png",  # line 6
    "P4,BAD^DATE,2022-13-45,CR,CHEST,CHEST,images/p1_chest.png",  # line 7
    "P5,BAD^MODALITY,2022-01-01,XRAY,CHEST,CHEST,images/p1_chest.png",  # line 8
    ",NO^ID,2022-01-01,CR,CHEST,CHEST,images/p1_chest.png",  # line 9
    "P6,ESCAPE,2022-01-01,CR,CHEST,CHEST,../outside.png",  # line 10
]


def make_folder(root: Path, rows: list[str]) -> dict[str, Image.Image]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    images = {
        "images/p1_chest.png": Image.frombytes("L", (24, 16), bytes(rng.randrange(256) for _ in range(24 * 16))),
        "images/p1_chest_2.png": Image.frombytes("L", (24, 16), bytes(range(256)) + bytes(128)),
        "images/p1_hand16.png": Image.frombytes(
            "I;16", (10, 12), b"".join(rng.randrange(4096).to_bytes(2, "little") for _ in range(120))
        ),
        "images/p2_skin.jpg": Image.new("RGB", (20, 10), (200, 60, 40)),
    }
    for name, image in images.items():
        image.save(root / name)
    (root.parent / "outside.png").write_bytes(b"")
    (root / "manifest.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return images


def host_for(root: Path, **extra: Any) -> Host:
    return Host.from_config(
        {"dataSources": [{"namespace": NAMESPACE, "sourceName": "images",
                          "configuration": {"root": str(root), **extra}}]}
    )  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, Image.Image]]:
    root = tmp_path / "dataset"
    images = make_folder(root, GOOD + BAD)
    return root, images


def test_found_through_its_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "datasources", "plugins", "--json"], capture_output=True, text=True, timeout=60
    )
    assert '"name": "imagefolder"' in out.stdout and NAMESPACE in out.stdout
    assert Host({"dataSources": []}).registry.extensions  # and the host sees it in-process too
    assert NAMESPACE in Host({"dataSources": []}).namespaces


def test_studies_series_and_search(folder: tuple[Path, Any]) -> None:
    ds = host_for(folder[0]).get_data_source("images")
    studies = ds.query.studies.search()
    assert sorted(s["PatientID"] for s in studies) == ["P1", "P2"]
    jane = ds.query.studies.search(PatientName="doe*")
    assert len(jane) == 1 and jane[0]["ModalitiesInStudy"] == ["CR", "DX"] and jane[0]["StudyDate"] == "20210304"
    assert ds.query.studies.search(ModalitiesInStudy="XC")[0]["PatientID"] == "P2"
    assert ds.query.studies.search(StudyDate="20220101-") == ds.query.studies.search(PatientID="P2")
    series = ds.query.series.search(jane[0]["StudyInstanceUID"])
    assert {(s["Modality"], s["SeriesDescription"], s["NumberOfSeriesRelatedInstances"]) for s in series} == {
        ("CR", "CHEST PA", 2),
        ("DX", "HAND", 1),
    }
    cr = next(s for s in series if s["Modality"] == "CR")
    instances = ds.query.instances.search(jane[0]["StudyInstanceUID"], cr["SeriesInstanceUID"], InstanceNumber="2")
    assert len(instances) == 1


def test_uids_are_stable_across_hosts_and_row_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "dataset", tmp_path / "b" / "dataset"
    make_folder(first, GOOD)
    make_folder(second, list(reversed(GOOD)))

    def uids(root: Path) -> set[tuple[str, str, str]]:
        ds = host_for(root).get_data_source("images")
        out = set()
        for study in ds.query.studies.search():
            for s in ds.query.series.search(study["StudyInstanceUID"]):
                for i in ds.query.instances.search(study["StudyInstanceUID"], s["SeriesInstanceUID"]):
                    out.add((study["StudyInstanceUID"], s["SeriesInstanceUID"], i["SOPInstanceUID"]))
        return out

    a = uids(first)
    assert len(a) == 4 and a == uids(second) and a == uids(first)
    assert all(u.startswith("2.25.") for triple in a for u in triple)


def test_metadata_and_frames_are_the_pixels(folder: tuple[Path, dict[str, Image.Image]]) -> None:
    root, images = folder
    host = host_for(root)
    ds = host.get_data_source("images")
    by_file = {}
    for study in ds.query.studies.search():
        ds.retrieve.series.metadata(study["StudyInstanceUID"])
        for series in host.metadata_store.get_study(study["StudyInstanceUID"])["series"]:
            for inst in series["instances"]:
                path = ds.helpers.image_path(inst["SOPInstanceUID"])
                by_file[path.relative_to(root).as_posix()] = inst
    assert set(by_file) == set(images)
    gray = by_file["images/p1_chest.png"]
    assert (gray["Rows"], gray["Columns"], gray["SamplesPerPixel"], gray["BitsAllocated"]) == (16, 24, 1, 8)
    assert gray["PhotometricInterpretation"] == "MONOCHROME2"
    frame = ds.retrieve.frames(gray["StudyInstanceUID"], gray["SeriesInstanceUID"], gray["SOPInstanceUID"], 1)
    assert frame == [images["images/p1_chest.png"].tobytes()]
    deep = by_file["images/p1_hand16.png"]
    assert (deep["BitsAllocated"], deep["Rows"], deep["Columns"]) == (16, 12, 10)
    assert ds.retrieve.bulk_data_uri(deep["PixelData"]) == images["images/p1_hand16.png"].tobytes()  # LE 16-bit
    rgb = by_file["images/p2_skin.jpg"]  # a baseline JPEG is served as it is: JPEG Baseline, YCbCr
    assert (rgb["SamplesPerPixel"], rgb["PhotometricInterpretation"], rgb["PlanarConfiguration"]) == (
        3,
        "YBR_FULL_422",
        0,
    )
    assert rgb["AvailableTransferSyntaxUID"] == [JPEG_BASELINE]
    stored = ds.retrieve.bulk_data_uri(rgb["PixelData"]["BulkDataURI"])
    assert stored == (root / "images/p2_skin.jpg").read_bytes() and label_of(stored) == JPEG_BASELINE
    (frame,) = ds.retrieve.frames(rgb["StudyInstanceUID"], rgb["SeriesInstanceUID"], rgb["SOPInstanceUID"], [1])
    assert frame == stored and label_of(frame) == JPEG_BASELINE
    decoded = decode_frame(frame, rgb, JPEG_BASELINE).astype(int)  # pydicom's decoders, as a viewer decodes it
    reference = np.asarray(Image.open(root / "images/p2_skin.jpg").convert("RGB"), dtype=int)
    assert decoded.shape == (10, 20, 3) and np.abs(decoded - reference).max() <= 2  # two IDCTs, rounding apart
    assert (
        label_of(ds.retrieve.frames(gray["StudyInstanceUID"], gray["SeriesInstanceUID"], gray["SOPInstanceUID"], 1)[0])
        == EXPLICIT_LE
    )
    assert ds.get_image_ids_for_instance(gray) == gray["imageId"]
    assert host.metadata_store.get_instance_by_image_id(gray["imageId"])["SOPInstanceUID"] == gray["SOPInstanceUID"]


def test_bad_rows_are_reported_with_their_line(folder: tuple[Path, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="datasources.imagefolder")
    ds = host_for(folder[0]).get_data_source("images")
    problems = {p.line: p.message for p in ds.helpers.problems()}
    assert set(problems) == {6, 7, 8, 9, 10}
    assert "missing file" in problems[6] and "exam_date" in problems[7] and "modality" in problems[8]
    assert "patient_id" in problems[9] and "outside" in problems[10]
    assert all(f"line {line}" in caplog.text for line in problems)
    assert len(ds.query.studies.search()) == 2  # the good rows still work


def test_reload_after_the_manifest_changes(folder: tuple[Path, Any]) -> None:
    root, _ = folder
    ds = host_for(root).get_data_source("images")
    assert len(ds.query.studies.search()) == 2
    (root / "manifest.csv").write_text("\n".join([HEADER, *GOOD[:2]]) + "\n")
    assert ds.helpers.reload() == []
    assert len(ds.query.studies.search()) == 1


def test_read_only_and_configuration_errors(folder: tuple[Path, Any], tmp_path: Path) -> None:
    ds = host_for(folder[0]).get_data_source("images")
    with pytest.raises(NotSupportedError, match="read-only"):
        ds.store.dicom(b"")
    with pytest.raises(NotSupportedError):
        ds.reject.series("1", "2")
    broken = tmp_path / "nocolumns"
    broken.mkdir()
    (broken / "manifest.csv").write_text("name,file\nx,y.png\n")
    with pytest.raises(Exception, match="lacks the column"):
        host_for(broken).get_data_source("images").query.studies.search()
    with pytest.raises(Exception, match="root"):
        Host.from_config(
            {"dataSources": [{"namespace": NAMESPACE, "sourceName": "x", "configuration": {}}]}, strict=True
        ).get_data_source("x")


class Auditor:
    """A second, small extension that reaches the imagefolder backend only through its helpers."""

    @hookimpl
    def getDataSourcesModule(self) -> list[Any]:
        return []

    @hookimpl
    def getDataSourceHelpers(self, source_name: str, namespace: str, data_source: Any) -> Any:
        if namespace != NAMESPACE:
            return None

        def audit() -> dict[str, Any]:
            problems = data_source.helpers.problems()
            return {"bad_lines": [p.line for p in problems], "studies": len(data_source.query.studies.search())}

        return {"audit": audit}


def test_another_extension_calls_the_helpers(folder: tuple[Path, Any]) -> None:
    host = Host.from_config(
        {"dataSources": [{"namespace": NAMESPACE, "sourceName": "images", "configuration": {"root": str(folder[0])}}]},
        extensions={"auditor": Auditor()},
    )
    assert host.get_data_source("images").helpers.audit() == {"bad_lines": [6, 7, 8, 9, 10], "studies": 2}
