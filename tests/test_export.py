"""``export static-wado``: each source's tree served by a plain file server and read back, equal to the source.

The sources are real: the bundled sample, a dicomlocal folder of pydicom's compressed files,
the imagefolder extension, and an Orthanc through the dicomweb source. Each tree is served on
127.0.0.1 by ``support.statictree`` (files only, gzip bodies with or without Content-Encoding)
and read back by this project's dicomweb source in ``staticWado`` mode and by dicomweb-client.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from datasources import Host
from datasources.export import export_static_wado
from support.staticcheck import compare_with_source, static_host
from support.statictree import serve_static_tree

REPO = Path(__file__).resolve().parents[1]
COMPRESSED = [
    "JPEG2000.dcm", "693_J2KI.dcm", "GDCMJ2K_TextGBR.dcm", "SC_rgb_rle_2frame.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "rtdose_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG-lossy.dcm", "SC_rgb_rle_16bit.dcm",
    "CT_small.dcm", "SC_rgb_dcmtk_+eb+cr.dcm", "image_dfl.dcm",
]  # fmt: skip


def local_host(root: Path, name: str = "local") -> Host:
    return Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": name,
                          "configuration": {"root": str(root)}}]}
    )  # fmt: skip


def compressed_folder(root: Path) -> Path:
    from pydicom.data import get_testdata_file

    root.mkdir(parents=True, exist_ok=True)
    for name in COMPRESSED:
        path = get_testdata_file(name)
        assert path is not None, name
        shutil.copy(path, root / name)
    return root


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def bulk_uris(dataset: Any) -> list[str]:
    found = []
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            if key == "BulkDataURI":
                found.append(value)
            else:
                found += bulk_uris(value)
    elif isinstance(dataset, list):
        for item in dataset:
            found += bulk_uris(item)
    return found


def check_tree_layout(root: Path) -> None:
    """What a plain file server needs: gzip files with .gz names, relative BulkDataURIs, no temporary names."""
    files = tree_files(root)
    assert "studies/index.json.gz" in files
    assert not [name for name in files if ".tmp-" in name]
    for name, data in files.items():
        if name.endswith(".gz"):
            assert data[:2] == b"\x1f\x8b", name
            value = orjson.loads(gzip.decompress(data))
            assert isinstance(value, list), name
            for uri in bulk_uris(value):
                assert not uri.startswith(("http:", "https:", "/", "file:", "dicomfile:")), (name, uri)
                assert (uri.startswith("bulkdata/") and f"{name.split('/')[1]}" in name) or uri.startswith("series/")


@pytest.fixture(params=[True, False], ids=["content-encoding", "bare-gzip"])
def encoding(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def export_and_compare(host: Host, source: str | None, dest: Path, content_encoding: bool) -> dict[str, int]:
    report = export_static_wado(host, str(dest), source=source)
    assert report.ok, [s.error for s in report.failed]
    assert report.count("written") == len(report.studies) > 0
    check_tree_layout(dest)
    with serve_static_tree(dest, content_encoding=content_encoding) as url:
        return compare_with_source(host, source, static_host(url))


def test_bundled_sample(tmp_path: Path, encoding: bool) -> None:
    counts = export_and_compare(Host(), None, tmp_path / "tree", encoding)
    assert counts["studies"] == 6 and counts["instances"] == 30 and counts["frames"] >= 30 and counts["searches"] > 10


def test_dicomlocal_compressed(tmp_path: Path, encoding: bool) -> None:
    host = local_host(compressed_folder(tmp_path / "data"))
    counts = export_and_compare(host, "local", tmp_path / "tree", encoding)
    indexed = sum(r["NumberOfStudyRelatedInstances"] for r in host.get_data_source("local").query.studies.search())
    assert counts["instances"] == indexed >= 9 and counts["frames"] > indexed  # MR_small's variants share a UID
    syntaxes = set()
    for path in (tmp_path / "tree").rglob("metadata.gz"):
        for dataset in orjson.loads(gzip.decompress(path.read_bytes())):
            syntaxes.add(dataset["00083002"]["Value"][0])
    families = {ts.rsplit(".", 1)[-1][:1] if ".4." in ts else ts for ts in syntaxes}
    assert {"1.2.840.10008.1.2.5", "5", "8", "9"} <= families, syntaxes  # RLE, JPEG, JPEG-LS, JPEG 2000


def test_imagefolder_extension(tmp_path: Path) -> None:
    from test_imagefolder import GOOD, NAMESPACE, make_folder

    make_folder(tmp_path / "dataset", GOOD)
    host = Host.from_config(
        {"dataSources": [{"namespace": NAMESPACE, "sourceName": "images",
                          "configuration": {"root": str(tmp_path / "dataset")}}]}
    )  # fmt: skip
    counts = export_and_compare(host, "images", tmp_path / "tree", True)
    assert counts["instances"] == 4 and counts["frames"] == 4
    thumbnails = list((tmp_path / "tree").rglob("thumbnail"))
    assert thumbnails and all(p.read_bytes()[:2] == b"\xff\xd8" for p in thumbnails)  # JPEG


def orthanc_host(url: str) -> Host:
    configuration = {"name": "orthanc", "qidoRoot": url, "wadoRoot": url, "requestOptions": {"retries": 0}}
    return Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "orthanc",
                          "configuration": configuration}]}
    )  # fmt: skip


@pytest.mark.orthanc
def test_orthanc_through_the_dicomweb_source(orthanc_dataset: Any, tmp_path: Path, encoding: bool) -> None:
    host = orthanc_host(orthanc_dataset.dicomweb_url)
    counts = export_and_compare(host, "orthanc", tmp_path / "tree", encoding)
    assert counts["studies"] == 4 and counts["instances"] == 11 and counts["frames"] == 14 and counts["bulk"] >= 11
    by_sop = orthanc_dataset.by_sop()  # and the frames are the pixels of the files Orthanc was given
    multi = orthanc_dataset.multiframe
    base = tmp_path / "tree/studies" / multi.StudyInstanceUID / "series" / multi.SeriesInstanceUID / "instances"
    size = multi.Rows * multi.Columns * 2
    assert (base / multi.SOPInstanceUID / "frames/3").read_bytes() == multi.PixelData[2 * size : 3 * size]
    assert len(by_sop) == 11


@pytest.mark.orthanc
def test_dicomweb_client_reads_the_tree(orthanc_dataset: Any, tmp_path: Path) -> None:
    from dicomweb_client.api import DICOMwebClient

    host = orthanc_host(orthanc_dataset.dicomweb_url)
    assert export_static_wado(host, str(tmp_path / "tree"), source="orthanc").ok
    ds = host.get_data_source("orthanc")
    with serve_static_tree(tmp_path / "tree") as url:
        client = DICOMwebClient(url)
        studies = client.search_for_studies()
        assert sorted(r["0020000D"]["Value"][0] for r in studies) == sorted(orthanc_dataset.study_uids)
        for study in orthanc_dataset.study_uids:
            series = client.search_for_series(study)
            assert {s["0020000E"]["Value"][0] for s in series} == {
                s["SeriesInstanceUID"] for s in ds.query.series.search(study)
            }
            for row in series:
                se = row["0020000E"]["Value"][0]
                metadata = client.retrieve_series_metadata(study, se)
                by_sop = {m["00080018"]["Value"][0]: m for m in metadata}
                for original in orthanc_dataset.datasets_of(study):
                    if original.SeriesInstanceUID != se:
                        continue
                    got = by_sop[original.SOPInstanceUID]
                    assert got["00100010"]["Value"][0]["Alphabetic"] == str(original.PatientName)
                    assert got["00083002"]["Value"] == [original.file_meta.TransferSyntaxUID]
                    private = got["00291011"]["BulkDataURI"]
                    assert private.startswith("bulkdata/")  # relative, as written
                    body = requests.get(f"{url}/studies/{study}/{private}", timeout=10).content
                    assert body == original[0x00291011].value
                    # frames: one file each, the bytes as stored (dicomweb-client wants multipart, a file is not)
                    size = original.Rows * original.Columns * 2
                    frame = requests.get(
                        f"{url}/studies/{study}/series/{se}/instances/{original.SOPInstanceUID}/frames/1", timeout=10
                    )
                    assert frame.content == original.PixelData[:size]
