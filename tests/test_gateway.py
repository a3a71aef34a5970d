"""The gateway route by route (Starlette's TestClient): QIDO-RS, WADO-RS, STOW-RS, statuses, auth, CORS.

The references are real parts: the sources' own answers, pydicom's reading of the same Part-10
files, a real dicomlocal folder for STOW, a real HTTP server on loopback for backend faults.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest

pytest.importorskip("starlette")

from datasources import Host
from datasources import multipart as mp
from datasources.errors import (
    AuthenticationError,
    BackendError,
    BackendTimeoutError,
    ConnectionFailedError,
    DatasetError,
    DataSourceUnavailableError,
    HTTPError,
    InvalidQueryError,
    MalformedResponseError,
    NotFoundError,
    NotSupportedError,
    StoreError,
    UnknownDataSourceError,
    UnsafePathError,
)
from datasources.gateway import create_app
from datasources.gateway.app import status_for
from datasources.gateway.qido import qido_row_keys
from datasources.naturalize import naturalize

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its TestClient; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from support.dicomgen import StudySpec, dataset_to_bytes, make_study
from support.faultserver import FaultServer, Reply

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "plugins/default/datasources_default/dicomjson/sample"
LEE_CT = "2.25.149445395880599934171435059992354054150"
MULLER = "2.25.75313203802919954442038035207528761217"
DICOM_JSON = "application/dicom+json"


def value(dataset: dict[str, Any], tag: str) -> Any:
    return (dataset.get(tag, {}).get("Value") or [None])[0]


def parts_of(response: Any) -> list[mp.Part]:
    return mp.parse(response.content, response.headers["content-type"])


@pytest.fixture(scope="module")
def sample_host() -> Host:
    return Host()


@pytest.fixture(scope="module")
def client(sample_host: Host) -> TestClient:
    return TestClient(create_app(sample_host))


def sample_file(sop: str) -> pydicom.FileDataset:
    return pydicom.dcmread(SAMPLE_DIR / "instances" / f"{sop}.dcm")


def first_instance(client: TestClient, study: str = LEE_CT) -> tuple[str, str, str]:
    series = client.get(f"/dicom-web/studies/{study}/series").json()
    se = value(series[0], "0020000E")
    rows = client.get(f"/dicom-web/studies/{study}/series/{se}/instances").json()
    return study, se, value(rows[0], "00080018")


# -- QIDO-RS ---------------------------------------------------------------------------------


def test_studies_are_the_sources_records_as_dicom_json(client: TestClient, sample_host: Host) -> None:
    response = client.get("/dicom-web/studies")
    assert response.status_code == 200 and response.headers["content-type"] == DICOM_JSON
    rows = response.json()
    records = sample_host.get_data_source().query.studies.search()
    assert [value(r, "0020000D") for r in rows] == [r["StudyInstanceUID"] for r in records]
    for row, record in zip(rows, records, strict=True):
        assert row["00100010"] == {"vr": "PN", "Value": [record["PatientName"]]}
        assert row["00080020"]["vr"] == "DA" and row["00201208"]["vr"] == "IS"
        assert row["00080061"] == {"vr": "CS", "Value": record["ModalitiesInStudy"]}
        back = naturalize(row)
        assert back.pop("RetrieveURL") == f"http://testserver/dicom-web/studies/{record['StudyInstanceUID']}"
        assert back == {
            k: v for k, v in record.items() if k in back or k in ("PatientName", "StudyDate")
        }  # one value rule


def test_query_values_are_percent_decoded_once(client: TestClient) -> None:
    def uids(query: str) -> list[str]:
        response = client.get(f"/dicom-web/studies?{query}")
        assert response.status_code == 200, response.text
        return [value(r, "0020000D") for r in response.json()]

    assert uids("PatientName=M%C3%9CLLER*") == [MULLER]
    assert uids("PatientName=LEE%5EANNA%5EK") == uids("PatientName=LEE^ANNA^K") != []
    assert uids("StudyDescription=CT%20CHEST*") == uids("StudyDescription=CT+CHEST*") == [LEE_CT]
    assert uids("PatientName=%2AANNA%2A") == uids("PatientName=*ANNA*") != []
    assert uids("StudyDescription=CT%2BCHEST*") == []  # %2B is a literal plus, not a space


def test_invalid_queries_are_400_with_a_json_error(client: TestClient) -> None:
    response = client.get("/dicom-web/studies?patientname=LEE*")
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["type"] == "InvalidQueryError" and "did you mean 'PatientName'" in body["error"]
    for query in ("limit=-1", "limit=abc", "offset=x", "fuzzymatching=maybe", "includefield=NoSuchKeyword"):
        assert client.get(f"/dicom-web/studies?{query}").status_code == 400, query
    assert client.get(f"/dicom-web/studies/{LEE_CT}/series?Modalty=CT").status_code == 400


def test_paging_and_repeated_values(client: TestClient) -> None:
    every = [value(r, "0020000D") for r in client.get("/dicom-web/studies").json()]
    pages = [client.get(f"/dicom-web/studies?limit=4&offset={o}").json() for o in (0, 4)]
    assert [value(r, "0020000D") for page in pages for r in page] == every
    assert len(pages[0]) == 4 and len(pages[1]) == 2
    ct = {value(r, "0020000D") for r in client.get("/dicom-web/studies?ModalitiesInStudy=CT").json()}
    mr = {value(r, "0020000D") for r in client.get("/dicom-web/studies?ModalitiesInStudy=MR").json()}
    both = client.get("/dicom-web/studies?ModalitiesInStudy=CT&ModalitiesInStudy=MR").json()
    assert ct and mr and {value(r, "0020000D") for r in both} == ct | mr
    assert client.get("/dicom-web/studies?ModalitiesInStudy=CT%5CMR").json() == both


def test_includefield_at_the_instance_level(client: TestClient) -> None:
    study, series, _ = first_instance(client)
    base = f"/dicom-web/studies/{study}/series/{series}/instances"
    plain = client.get(base).json()[0]
    assert "00280030" not in plain and "7FE00010" not in plain  # PixelSpacing and pixels: not by default
    assert {"00080016", "00080018", "00280010", "00280011", "0020000D", "0020000E"} <= set(plain)
    for field in ("PixelSpacing", "00280030"):
        assert client.get(f"{base}?includefield={field}").json()[0]["00280030"] == {"vr": "DS", "Value": [0.5, 0.5]}
    both = client.get(f"{base}?includefield=PixelSpacing,SliceThickness").json()[0]
    assert "00280030" in both and "00180050" in both
    everything = client.get(f"{base}?includefield=all").json()[0]
    sop = value(everything, "00080018")
    assert everything["7FE00010"]["BulkDataURI"] == (
        f"http://testserver/dicom-web/studies/{study}/series/{series}/instances/{sop}/bulkdata/7FE00010"
    )


def test_series_and_instances_in_a_study(client: TestClient, sample_host: Host) -> None:
    rows = client.get(f"/dicom-web/studies/{LEE_CT}/series").json()
    records = sample_host.get_data_source().query.series.search(LEE_CT)
    assert [value(r, "0020000E") for r in rows] == [r["SeriesInstanceUID"] for r in records]
    assert all(value(r, "0020000D") == LEE_CT for r in rows)
    assert value(rows[0], "00081190").endswith(f"/studies/{LEE_CT}/series/{value(rows[0], '0020000E')}")
    assert rows[0]["00200011"]["vr"] == "IS" and rows[0]["00201209"]["vr"] == "IS"
    everything = client.get(f"/dicom-web/studies/{LEE_CT}/instances").json()
    assert len(everything) == 7 and {value(r, "0020000E") for r in everything} == {value(r, "0020000E") for r in rows}
    # PS3.18 6.7.1.2: the less a search is scoped, the more levels' attributes its rows carry
    assert "Modality" in qido_row_keys("instance", True) and "Modality" not in qido_row_keys("instance", True, True)
    assert "PatientName" in qido_row_keys("series", False) and "PatientName" not in qido_row_keys("series", True)
    assert client.get("/dicom-web/studies/1.2.3.4/series").json() == []  # a search finds nothing: 200 []


def test_series_and_instances_without_a_study(client: TestClient, sample_host: Host) -> None:
    ds = sample_host.get_data_source()
    mr = client.get("/dicom-web/series?Modality=MR").json()
    expected = [
        (s["StudyInstanceUID"], r["SeriesInstanceUID"])
        for s in ds.query.studies.search()
        for r in ds.query.series.search(s["StudyInstanceUID"], {"Modality": "MR"})
    ]
    assert [(value(r, "0020000D"), value(r, "0020000E")) for r in mr] == expected and len(expected) == 6
    assert all(r["00100010"]["vr"] == "PN" for r in mr)  # study attributes come along, unscoped
    lee_mr = client.get("/dicom-web/series?PatientName=LEE*&Modality=MR").json()
    assert len(lee_mr) == 2 and all(value(r, "00100020") == "PAT0001" for r in lee_mr)
    assert len(client.get("/dicom-web/series?Modality=MR&limit=2&offset=5").json()) == 1
    garcia = client.get("/dicom-web/instances?PatientName=GARCIA*").json()
    assert len(garcia) == 4 and {value(r, "00080060") for r in garcia} == {"CT"}
    one = client.get(f"/dicom-web/instances?SOPInstanceUID={value(garcia[0], '00080018')}").json()
    assert [value(r, "00080018") for r in one] == [value(garcia[0], "00080018")]


def test_named_source_routes_and_unknown_sources(client: TestClient) -> None:
    assert (
        client.get("/sample/dicom-web/studies")
        .json()[0]["00081190"]["Value"][0]
        .startswith("http://testserver/sample/dicom-web/studies/")
    )
    response = client.get("/nosuch/dicom-web/studies")
    assert response.status_code == 404 and response.json()["type"] == "UnknownDataSourceError"
    assert "'sample'" in response.json()["error"]
    assert client.get("/dicom-web/nothing-here").status_code == 404
    assert client.get("/dicom-web/studies", headers={"Accept": "application/dicom+xml"}).status_code == 406
    assert client.get("/dicom-web/studies", headers={"Accept": "application/json"}).status_code == 200
    assert client.delete("/dicom-web/studies").status_code == 405


# -- WADO-RS ---------------------------------------------------------------------------------


def test_study_metadata_has_pydicoms_tags_and_vrs(client: TestClient) -> None:
    response = client.get(f"/dicom-web/studies/{LEE_CT}/metadata")
    assert response.status_code == 200 and response.headers["content-type"] == DICOM_JSON
    instances = response.json()
    assert len(instances) == 7
    for dataset in instances:
        sop = value(dataset, "00080018")
        reference = sample_file(sop).to_json_dict(bulk_data_threshold=1, bulk_data_element_handler=lambda e: "x")
        shared = [tag for tag in dataset if tag in reference]
        assert len(shared) >= 30 and set(dataset) - set(reference) <= {"00081190"}, set(dataset) - set(reference)
        for tag in shared:
            element = reference[tag]
            if element["vr"] in ("OB", "OW"):
                assert dataset[tag]["vr"] in ("OB", "OW") and "BulkDataURI" in dataset[tag]
            else:
                assert dataset[tag]["vr"] == element["vr"], tag
                assert dataset[tag].get("Value") == element.get("Value"), tag


def test_series_and_instance_metadata_and_404s(client: TestClient) -> None:
    study, series, sop = first_instance(client)
    rows = client.get(f"/dicom-web/studies/{study}/series/{series}/metadata").json()
    assert {value(r, "0020000E") for r in rows} == {series} and len(rows) == 4
    one = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata").json()
    assert len(one) == 1 and value(one[0], "00080018") == sop
    for path in (
        "/dicom-web/studies/1.2.3/metadata",
        f"/dicom-web/studies/{study}/series/1.2.3/metadata",
        f"/dicom-web/studies/{study}/series/{series}/instances/1.2.3/metadata",
    ):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["type"] == "NotFoundError", path


def test_bulk_data_and_frames_are_the_files_pixels(client: TestClient) -> None:
    study, series, sop = first_instance(client)
    pixels = sample_file(sop).PixelData
    metadata = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata").json()[0]
    uri = metadata["7FE00010"]["BulkDataURI"]
    assert uri.startswith("http://testserver/dicom-web/")
    bulk = client.get(uri)
    assert bulk.status_code == 200 and bulk.headers["content-type"].startswith("multipart/related")
    assert [p.content for p in parts_of(bulk)] == [pixels]
    frames = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1")
    assert frames.status_code == 200
    kind, params = mp.split_media_type(frames.headers["content-type"])
    assert kind == "multipart/related" and params["type"] == "application/octet-stream"
    (part,) = parts_of(frames)
    assert part.content == pixels
    assert part.content_type == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"


def test_frame_numbers_and_accept(client: TestClient) -> None:
    study, series, sop = first_instance(client)
    url = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames"
    for bad in ("0", "a", "1,,2", "-1"):
        assert client.get(f"{url}/{bad}").status_code == 400, bad
    missing = client.get(f"{url}/2")
    assert missing.status_code == 404 and "1 frame" in missing.json()["error"]
    single = client.get(f"{url}/1", headers={"Accept": "application/octet-stream"})
    assert single.headers["content-type"].startswith("application/octet-stream")
    assert single.content == sample_file(sop).PixelData
    ohif = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    assert client.get(f"{url}/1", headers={"Accept": ohif}).status_code == 200
    assert client.get(f"{url}/1", headers={"Accept": 'multipart/related; type="image/jpeg"'}).status_code == 406


def test_multiframe_native_and_encapsulated_through_the_fallback(tmp_path: Path) -> None:
    """A dicomjson source has no frame reader: the gateway cuts PixelData itself."""
    from pydicom.encaps import generate_frames
    from pydicom.uid import RLELossless

    (native,) = make_study(
        StudySpec("gw-multiframe", patient_name="MULTI^FRAME", modality="MR", n_instances=1, frames=5)
    )
    rle = copy.deepcopy(native)
    rle.SOPInstanceUID = native.SOPInstanceUID + ".1"
    rle.compress(RLELossless, encoding_plugin="pydicom")
    instances = []
    for ds in (native, rle):
        (tmp_path / f"{ds.SOPInstanceUID}.dcm").write_bytes(dataset_to_bytes(ds))
        meta = naturalize(ds.to_json_dict(bulk_data_threshold=1, bulk_data_element_handler=lambda e: "x"))
        meta["PixelData"] = {"BulkDataURI": f"{ds.SOPInstanceUID}.dcm"}
        meta["AvailableTransferSyntaxUID"] = str(ds.file_meta.TransferSyntaxUID)
        instances.append({"metadata": meta, "url": f"dicomweb:{ds.SOPInstanceUID}.dcm"})
    document = {
        "studies": [
            {
                "StudyInstanceUID": native.StudyInstanceUID,
                "PatientName": "MULTI^FRAME",
                "series": [{"SeriesInstanceUID": native.SeriesInstanceUID, "Modality": "MR", "instances": instances}],
            }
        ]
    }
    (tmp_path / "doc.json").write_text(json.dumps(document))
    host = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "mf",
                                   "configuration": {"path": str(tmp_path / "doc.json")}}]})  # fmt: skip
    client = TestClient(create_app(host))
    base = f"/dicom-web/studies/{native.StudyInstanceUID}/series/{native.SeriesInstanceUID}/instances"
    size = native.Rows * native.Columns * 2
    response = client.get(f"{base}/{native.SOPInstanceUID}/frames/2,5")
    assert response.status_code == 200
    assert [p.content for p in parts_of(response)] == [native.PixelData[size : 2 * size], native.PixelData[4 * size :]]
    expected = list(generate_frames(rle.PixelData, number_of_frames=5))
    response = client.get(f"{base}/{rle.SOPInstanceUID}/frames/1,3", headers={"Accept": "*/*"})
    assert [p.content for p in parts_of(response)] == [expected[0], expected[2]]
    assert 'type="image/dicom-rle"' in response.headers["content-type"]
    assert parts_of(response)[0].content_type == f"image/dicom-rle; transfer-syntax={RLELossless}"
    plain = 'multipart/related; type="application/octet-stream"'  # uncompressed, by the standard: decoded
    decoded = client.get(f"{base}/{rle.SOPInstanceUID}/frames/1,3", headers={"Accept": plain})
    assert [p.content for p in parts_of(decoded)] == [native.PixelData[:size], native.PixelData[2 * size : 3 * size]]
    assert parts_of(decoded)[0].content_type == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    jpeg = client.get(
        f"{base}/{rle.SOPInstanceUID}/frames/1", headers={"Accept": 'multipart/related; type="image/jpeg"'}
    )
    assert jpeg.status_code == 406 and "transfer-syntax=*" in jpeg.json()["error"]  # it lists what it can serve
    ohif = client.get(f"{base}/{rle.SOPInstanceUID}/frames/2", headers={"Accept": plain + "; transfer-syntax=*"})
    assert [p.content for p in parts_of(ohif)] == [expected[1]]  # as stored, labelled with its transfer syntax
    assert parts_of(ohif)[0].content_type == f"application/octet-stream; transfer-syntax={RLELossless}"
    single = client.get(f"{base}/{rle.SOPInstanceUID}/frames/3", headers={"Accept": "image/dicom-rle"})
    assert single.content == expected[2] and single.headers["content-type"].startswith("image/dicom-rle")
    assert client.get(f"{base}/{native.SOPInstanceUID}/frames/6").status_code == 404


def test_rendered_and_thumbnails(client: TestClient) -> None:
    import numpy as np
    from PIL import Image

    study, series, sop = first_instance(client, MULLER)
    instance = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    rendered = client.get(f"{instance}/rendered")
    assert rendered.status_code == 200 and rendered.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(rendered.content))
    source = sample_file(sop)
    assert image.size == (source.Columns, source.Rows) and image.mode == "L"
    pixels = source.pixel_array.astype(float) * float(source.get("RescaleSlope", 1)) + float(
        source.get("RescaleIntercept", 0)
    )
    low = float(source.WindowCenter) - float(source.WindowWidth) / 2
    expected = np.clip((pixels - low) / float(source.WindowWidth), 0, 1) * 255
    assert np.abs(np.asarray(image).astype(float) - expected).max() <= 1.0
    jpeg = client.get(f"{instance}/frames/1/rendered?viewport=64,32", headers={"Accept": "image/jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(jpeg.content)).size == (32, 32)
    assert client.get(f"{instance}/rendered?viewport=0,10").status_code == 400
    for path in (f"/dicom-web/studies/{study}/series/{series}/thumbnail", f"/dicom-web/studies/{study}/thumbnail"):
        thumb = client.get(path)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png", path
        array = np.asarray(Image.open(io.BytesIO(thumb.content)))
        assert array.shape == (128, 128) and array.min() == 0 and array.max() == 255  # stretched, not blank


# -- STOW-RS ---------------------------------------------------------------------------------


def stow_body(items: list[bytes], part_type: str = "application/dicom") -> tuple[bytes, dict[str, str]]:
    body, boundary = mp.build([(item, part_type) for item in items])
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


@pytest.fixture
def local(tmp_path: Path) -> tuple[Host, TestClient]:
    root = tmp_path / "store"
    root.mkdir()
    host = Host({"dataSources": [
        {"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "local",
         "configuration": {"root": str(root), "cache": str(tmp_path / "index.sqlite")}},
        {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "sample",
         "configuration": {"bundled": "sample"}},
    ], "defaultDataSourceName": "local"})  # fmt: skip
    return host, TestClient(create_app(host, max_stow_bytes=4_000_000))


def test_stow_stores_and_answers_with_the_standard_dataset(local: tuple[Host, TestClient]) -> None:
    _, client = local
    datasets = make_study(StudySpec("gw-stow", patient_name="STOW^ONE", n_series=1, n_instances=3))
    body, headers = stow_body([dataset_to_bytes(ds) for ds in datasets])
    response = client.post("/local/dicom-web/studies", content=body, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == DICOM_JSON
    answer = response.json()
    study = datasets[0].StudyInstanceUID
    assert value(answer, "00081190") == f"http://testserver/local/dicom-web/studies/{study}"
    assert "00081198" not in answer
    referenced = answer["00081199"]["Value"]
    assert [value(r, "00081155") for r in referenced] == [ds.SOPInstanceUID for ds in datasets]
    assert all(value(r, "00081150") == datasets[0].SOPClassUID for r in referenced)
    assert value(referenced[0], "00081190").endswith(f"/series/{datasets[0].SeriesInstanceUID}/instances/"
                                                     f"{datasets[0].SOPInstanceUID}")  # fmt: skip
    found = client.get(f"/local/dicom-web/studies?StudyInstanceUID={study}").json()
    assert value(found[0], "00100010") == {"Alphabetic": "STOW^ONE"}
    metadata = client.get(f"/local/dicom-web/studies/{study}/metadata").json()
    assert sorted(value(m, "00080018") for m in metadata) == sorted(ds.SOPInstanceUID for ds in datasets)


def test_stow_refusals_and_partial_success(local: tuple[Host, TestClient]) -> None:
    _, client = local
    first, second = make_study(StudySpec("gw-stow-2", patient_name="STOW^TWO", n_instances=2))
    body, headers = stow_body([dataset_to_bytes(first)])
    assert client.post("/dicom-web/studies", content=body, headers=headers).status_code == 200
    duplicate = client.post("/dicom-web/studies", content=body, headers=headers)
    assert duplicate.status_code == 409
    (failed,) = duplicate.json()["00081198"]["Value"]
    assert value(failed, "00081155") == first.SOPInstanceUID and value(failed, "00081197") == 0x0111
    body, headers = stow_body([dataset_to_bytes(second), b"not DICOM at all"])
    mixed = client.post("/dicom-web/studies", content=body, headers=headers)
    assert mixed.status_code == 202
    assert [value(r, "00081155") for r in mixed.json()["00081199"]["Value"]] == [second.SOPInstanceUID]
    assert [value(r, "00081197") for r in mixed.json()["00081198"]["Value"]] == [0xC000]
    (other,) = make_study(StudySpec("gw-stow-3", n_instances=1))
    body, headers = stow_body([dataset_to_bytes(other)])
    wrong_study = client.post(f"/dicom-web/studies/{first.StudyInstanceUID}", content=body, headers=headers)
    assert wrong_study.status_code == 409 and value(wrong_study.json()["00081198"]["Value"][0], "00081197") == 0x0110
    assert client.get(f"/dicom-web/studies?StudyInstanceUID={other.StudyInstanceUID}").json() == []


def test_stow_bad_requests(local: tuple[Host, TestClient]) -> None:
    _, client = local
    (ds,) = make_study(StudySpec("gw-stow-4", n_instances=1))
    body, headers = stow_body([dataset_to_bytes(ds)])
    assert (
        client.post("/dicom-web/studies", content=body, headers={"Content-Type": "application/dicom"}).status_code
        == 415
    )
    xml = {"Content-Type": headers["Content-Type"].replace("application/dicom", "application/dicom+xml")}
    assert client.post("/dicom-web/studies", content=body, headers=xml).status_code == 415
    truncated = client.post("/dicom-web/studies", content=body[:-30], headers=headers)
    assert truncated.status_code == 400 and truncated.json()["type"] == "DatasetError"
    big = client.post("/dicom-web/studies", content=b"x" * 4_000_001, headers=headers)
    assert big.status_code == 413
    read_only = client.post("/sample/dicom-web/studies", content=body, headers=headers)
    assert read_only.status_code == 405 and read_only.headers["allow"] == "GET, HEAD"
    assert read_only.json()["type"] == "NotSupportedError"
    assert client.get(f"/dicom-web/studies?StudyInstanceUID={ds.StudyInstanceUID}").json() == []  # nothing half-stored


def test_a_stow_into_a_served_study_is_seen_at_once(local: tuple[Host, TestClient]) -> None:
    _, client = local
    first, second = make_study(StudySpec("gw-stow-5", patient_name="STOW^FIVE", n_instances=2))
    body, headers = stow_body([dataset_to_bytes(first)])
    client.post("/dicom-web/studies", content=body, headers=headers)
    study = first.StudyInstanceUID
    assert len(client.get(f"/dicom-web/studies/{study}/metadata").json()) == 1
    body, headers = stow_body([dataset_to_bytes(second)])
    assert client.post(f"/dicom-web/studies/{study}", content=body, headers=headers).status_code == 200
    assert len(client.get(f"/dicom-web/studies/{study}/metadata").json()) == 2  # metadata_ttl notwithstanding


def test_a_merge_source(tmp_path: Path) -> None:
    """Searches fan out, frames come from the member's reader or, when it has none, from its pixel data."""
    merge = {"seriesMerge": {"dataSourceNames": ["sample", "folder"], "defaultDataSourceName": "folder"}}
    host = Host({"dataSources": [
        {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "sample",
         "configuration": {"bundled": "sample"}},
        {"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "folder",
         "configuration": {"root": str(tmp_path), "cache": str(tmp_path / "index.sqlite")}},
        {"namespace": "default.dataSourcesModule.merge", "sourceName": "merged", "configuration": merge},
    ], "defaultDataSourceName": "merged"})  # fmt: skip
    client = TestClient(create_app(host))
    datasets = make_study(StudySpec("gw-merge", patient_name="MERGE^ME", n_instances=2))
    body, headers = stow_body([dataset_to_bytes(ds) for ds in datasets])
    assert client.post("/dicom-web/studies", content=body, headers=headers).status_code == 200  # to the folder
    assert len(client.get("/dicom-web/studies").json()) == 7
    new = datasets[0]
    frames = client.get(
        f"/dicom-web/studies/{new.StudyInstanceUID}/series/{new.SeriesInstanceUID}/instances/{new.SOPInstanceUID}/frames/1"
    )
    assert [p.content for p in parts_of(frames)] == [new.PixelData]
    study, series, sop = first_instance(client)
    old = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1")
    assert old.status_code == 200 and [p.content for p in parts_of(old)] == [sample_file(sop).PixelData]
    assert client.get(f"/dicom-web/studies/{study}/series/{series}/thumbnail").status_code == 200


# -- metadata freshness and several sources ----------------------------------------------------


def _two_copies(tmp_path: Path) -> Host:
    document = json.loads((SAMPLE_DIR / "sample.json").read_text(encoding="utf-8"))
    document["studies"][0]["PatientName"] = {"Alphabetic": "COPY^OF^LEE"}
    for series in document["studies"][0]["series"]:
        for instance in series["instances"]:
            instance["metadata"]["PatientName"] = {"Alphabetic": "COPY^OF^LEE"}
    shutil.copytree(SAMPLE_DIR / "instances", tmp_path / "instances")
    (tmp_path / "copy.json").write_text(json.dumps(document))
    return Host({"dataSources": [
        {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "a", "configuration": {"bundled": "sample"}},
        {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "b",
         "configuration": {"path": str(tmp_path / "copy.json")}},
    ]})  # fmt: skip


def test_two_sources_with_the_same_study_uids_stay_apart(tmp_path: Path) -> None:
    client = TestClient(create_app(_two_copies(tmp_path), metadata_ttl=3600))

    def names(source: str) -> set[str]:
        rows = client.get(f"/{source}/dicom-web/studies/{LEE_CT}/metadata").json()
        return {value(r, "00100010")["Alphabetic"] for r in rows}

    for _ in range(2):
        assert names("a") == {"LEE^ANNA^K"}
        assert names("b") == {"COPY^OF^LEE"}


def test_metadata_ttl_and_the_cache_bound() -> None:
    host = Host()
    loads: list[str] = []
    host.metadata_store.subscribe(
        host.metadata_store.EVENTS.INSTANCES_ADDED, lambda e: loads.append(e["StudyInstanceUID"])
    )
    cached = TestClient(create_app(host, metadata_ttl=3600, max_cached_studies=1))
    cached.get(f"/dicom-web/studies/{LEE_CT}/metadata")
    first = len(loads)
    cached.get(f"/dicom-web/studies/{LEE_CT}/metadata")
    assert first == 2 and len(loads) == first  # two series loaded once, then served from the store
    cached.get(f"/dicom-web/studies/{MULLER}/metadata")
    assert host.metadata_store.get_study(LEE_CT) is None and host.metadata_store.get_study(MULLER) is not None
    fresh = TestClient(create_app(Host(), metadata_ttl=0))
    store = fresh.app.state.gateway.host.metadata_store
    again: list[str] = []
    store.subscribe(store.EVENTS.INSTANCES_ADDED, lambda e: again.append(e["StudyInstanceUID"]))
    for _ in range(3):
        assert len(fresh.get(f"/dicom-web/studies/{LEE_CT}/metadata").json()) == 7
    assert len(again) == 6  # fetched every time


def test_sources_option_and_default(tmp_path: Path) -> None:
    host = _two_copies(tmp_path)
    client = TestClient(create_app(host, sources=["b"]))
    assert client.get("/a/dicom-web/studies").status_code == 404
    first = client.get("/dicom-web/studies").json()[0]
    assert value(first, "00100010") == {"Alphabetic": "COPY^OF^LEE"}
    from datasources.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="'nope'"):
        create_app(host, sources=["nope"])
    with pytest.raises(ConfigurationError, match="not served"):
        create_app(host, sources=["a"], default_source="b")


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidQueryError("x"), 400),
        (DatasetError("x"), 400),
        (UnsafePathError("x"), 403),
        (NotFoundError("x"), 404),
        (UnknownDataSourceError("x", []), 404),
        (NotSupportedError("frames"), 501),
        (StoreError("x"), 409),
        (DataSourceUnavailableError("x"), 503),
        (BackendTimeoutError("x"), 504),
        (AuthenticationError(401, "http://h/x"), 502),
        (HTTPError(404, "http://h/x"), 404),
        (HTTPError(400, "http://h/x"), 400),
        (HTTPError(500, "http://h/x"), 502),
        (ConnectionFailedError("x"), 502),
        (MalformedResponseError("x"), 502),
        (BackendError("x"), 502),
    ],
)
def test_typed_errors_map_to_statuses(error: Exception, status: int) -> None:
    assert status_for(error) == status


def _backend(url: str, **options: Any) -> TestClient:
    configuration = {"wadoRoot": f"{url}/dicom-web", "requestOptions": {"retries": 0, "backoff": 0, **options}}
    host = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
                                   "configuration": configuration}]})  # fmt: skip
    return TestClient(create_app(host))


def test_backend_faults_are_named_not_detailed(fault_server: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    client = _backend(fault_server.url, timeout=0.5)
    fault_server.script("/dicom-web/studies", Reply(500, b'{"Message": "internal detail of the PACS"}'))
    with caplog.at_level("WARNING", logger="datasources.gateway"):
        response = client.get("/dicom-web/studies")
    assert response.status_code == 502 and response.json()["type"] == "HTTPError"
    assert fault_server.url not in response.text and "internal detail" not in response.text
    assert "HTTP 500" in response.json()["error"]
    assert fault_server.url in caplog.text  # the operator's log has it
    fault_server.script("/dicom-web/studies", Reply(hang=True))
    timed_out = client.get("/dicom-web/studies")
    assert timed_out.status_code == 504 and timed_out.json()["type"] == "BackendTimeoutError"
    fault_server.script("/dicom-web/studies/1.2/series", Reply(401))
    assert client.get("/dicom-web/studies/1.2/series").status_code == 502


def test_backend_frames_are_passed_through(fault_server: FaultServer) -> None:
    client = _backend(fault_server.url)
    body = b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + b"\x07" * 32 + b"\r\n--b--\r\n"
    headers = {"Content-Type": "multipart/related; type=application/octet-stream; boundary=b"}
    fault_server.script("/dicom-web/studies/1/series/2/instances/3/frames/1", Reply(200, body, headers))
    response = client.get("/dicom-web/studies/1/series/2/instances/3/frames/1")
    assert [p.content for p in parts_of(response)] == [b"\x07" * 32]
    sent = fault_server.requests_to("/dicom-web/studies/1/series/2/instances/3/frames/1")[0]
    assert "transfer-syntax=*" in sent.headers["Accept"]


# -- auth and CORS ---------------------------------------------------------------------------

TOKEN = "gw-T0ken-5f1c8a2e9b"


def test_bearer_token(sample_host: Host) -> None:
    client = TestClient(create_app(sample_host, token=TOKEN))
    missing = client.get("/dicom-web/studies")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="datasources gateway"'
    wrong = client.get("/dicom-web/studies", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    basic = client.get("/dicom-web/studies", headers={"Authorization": "Basic " + base64.b64encode(b"a:b").decode()})
    assert basic.status_code == 401 and 'error="invalid_request"' in basic.headers["www-authenticate"]
    prefix = client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {TOKEN[:-1]}"})
    assert prefix.status_code == 401
    good = client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200 and len(good.json()) == 6
    assert client.get("/").status_code == 200  # the page holds no data
    assert client.get("/browser/browser.js").status_code == 200
    assert client.get("/api/sources").status_code == 401
    for response in (missing, wrong, basic, prefix, good):
        assert TOKEN not in response.text and TOKEN not in str(response.headers)
    assert TOKEN not in repr(client.app.middleware_stack) and TOKEN not in repr(client.app.state.gateway)
    with pytest.raises(Exception, match="empty"):
        create_app(sample_host, token="  ")


def test_cors(sample_host: Host) -> None:
    client = TestClient(create_app(sample_host, token=TOKEN, cors_origins=["http://viewer.example"]))
    preflight = client.options(
        "/dicom-web/studies",
        headers={
            "Origin": "http://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://viewer.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    denied = client.get("/dicom-web/studies", headers={"Origin": "http://viewer.example"})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "http://viewer.example"
    other = client.get(
        "/dicom-web/studies", headers={"Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"}
    )
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert (
        "access-control-allow-origin"
        not in TestClient(create_app(sample_host))
        .get("/dicom-web/studies", headers={"Origin": "http://viewer.example"})
        .headers
    )


# -- multipart -------------------------------------------------------------------------------


def test_multipart_round_trip_and_framing() -> None:
    body, boundary = mp.build([(b"one\r\n--not-the-boundary", "application/dicom"), (b"", "application/dicom")])
    parts = mp.parse(body, f'multipart/related; type="application/dicom"; boundary="{boundary}"')
    assert [p.content for p in parts] == [b"one\r\n--not-the-boundary", b""]
    assert parts[0].content_type == "application/dicom"
    no_headers = b"--b\r\n\r\nabc\r\n--b\r\nContent-Type: x\n\nlf only\n--b--"
    assert [p.content for p in mp.parse(no_headers, "multipart/related; boundary=b")] == [b"abc", b"lf only"]
    with pytest.raises(DatasetError, match="closing boundary"):
        mp.parse(b"--b\r\nContent-Type: x\r\n\r\nabc", "multipart/related; boundary=b")
    with pytest.raises(DatasetError, match="no boundary"):
        mp.parse(body, "multipart/related")
    with pytest.raises(DatasetError, match="multipart/related"):
        mp.parse(body, "application/dicom")
    assert mp.split_media_type('Multipart/Related; type="a/b; c"; boundary=x') == (
        "multipart/related",
        {"type": "a/b; c", "boundary": "x"},
    )


# -- concurrency -----------------------------------------------------------------------------


def test_a_study_lock_lives_while_it_is_held(sample_host: Host) -> None:
    import gc

    from datasources.gateway.app import Gateway

    gateway = Gateway(sample_host)
    tried: list[bool] = []

    def other_request() -> None:
        lock = gateway._lock_for(LEE_CT).lock
        got = lock.acquire(blocking=False)
        tried.append(got)
        if got:
            lock.release()

    with gateway._lock_for(LEE_CT):
        gc.collect()  # nothing but the with statement refers to the lock now
        worker = threading.Thread(target=other_request)
        worker.start()
        worker.join()
    assert tried == [False]  # another request for the study waits on this very lock


def test_concurrent_requests_with_refetching_metadata() -> None:
    """Metadata fetched again on every request (ttl 0) while others read it: every answer whole."""
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from test_gateway_support import served

    with served(create_app(Host(), metadata_ttl=0)) as server:
        study, series, sop = first_instance(TestClient(create_app(Host())))
        paths = [f"/dicom-web/studies/{LEE_CT}/metadata", f"/dicom-web/studies/{study}/series/{series}/metadata",
                 f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
                 f"/dicom-web/studies/{study}/series/{series}/thumbnail"] * 12  # fmt: skip

        def get(path: str) -> tuple[str, int, int]:
            response = requests.get(f"{server.url}{path}", timeout=60)
            size = len(response.json()) if path.endswith("metadata") and response.ok else len(response.content)
            return path, response.status_code, size

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(get, paths))
    assert all(status == 200 for _, status, _ in results), [r for r in results if r[1] != 200][:3]
    assert {size for path, _, size in results if path.endswith(f"{LEE_CT}/metadata")} == {7}
    assert {size for path, _, size in results if path.endswith(f"{series}/metadata")} == {4}
