"""The imagefolder extension (PNG/JPEG + CSV, no DICOM) through the gateway, read back as DICOMweb.

This project's dicomweb source pointed at the gateway round-trips the folder: the same studies,
the same metadata, the same frames as the imagefolder source gives directly, and the pixels of
the original PNG files; dicomweb-client reads it too.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("datasources_imagefolder")

import numpy as np
import requests
from datasources import Host
from datasources.gateway import create_app
from PIL import Image
from test_gateway_support import Served, served

MANIFEST = """patient_id,patient_name,exam_date,modality,description,body_part,image_path
P100,DOE^JOHN,2024-01-02,CR,CHEST PA,CHEST,img/gray.png
P100,DOE^JOHN,2024-01-02,CR,CHEST LAT,CHEST,img/rgb.png
P200,ROE^ANN,2023-05-06,XC,HAND PHOTO,HAND,img/hand.jpg
"""
VOLATILE = {"imageId", "wadoRoot", "wadoUri", "url", "RetrieveURL"}


def comparable(instance: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in instance.items():
        if key in VOLATILE or key.startswith("_"):
            continue
        out[key] = {"BulkDataURI": "..."} if isinstance(value, dict) and "BulkDataURI" in value else value
    return out


def make_folder(root: Path) -> dict[str, np.ndarray]:
    (root / "img").mkdir(parents=True)
    gray = (np.arange(12 * 10).reshape(12, 10) * 255 // (12 * 10 - 1)).astype("u1")  # 0..255: no stretching
    rgb = np.stack([gray[:7, :9], 255 - gray[:7, :9], np.full((7, 9), 60, "u1")], axis=-1)
    hand = np.full((8, 8, 3), 128, "u1")
    Image.fromarray(gray, "L").save(root / "img/gray.png")
    Image.fromarray(rgb, "RGB").save(root / "img/rgb.png")
    Image.fromarray(hand, "RGB").save(root / "img/hand.jpg", quality=95)
    (root / "manifest.csv").write_text(MANIFEST)
    return {"gray.png": gray, "rgb.png": rgb}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Host, Served, dict[str, np.ndarray]]]:
    """(a host reading the folder, a host reading it through the gateway, the gateway, the PNG pixels)."""
    root = tmp_path_factory.mktemp("imagefolder")
    pixels = make_folder(root)
    folder_host = Host({"dataSources": [{"namespace": "imagefolder.dataSourcesModule.imagefolder",
                                          "sourceName": "images", "configuration": {"root": str(root)}}]})  # fmt: skip
    with served(create_app(folder_host)) as server:
        root_url = f"{server.url}/images/dicom-web"
        configuration = {"qidoRoot": root_url, "wadoRoot": root_url, "imageRendering": "wadors",
                         "requestOptions": {"queryEncoding": "percent"}}  # fmt: skip
        relay = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "relay",
                                        "configuration": configuration}]})  # fmt: skip
        yield folder_host, relay, server, pixels


def test_searches_and_metadata_round_trip(chain: tuple[Host, Host, Served, dict[str, np.ndarray]]) -> None:
    folder_host, relay_host, _, _ = chain
    folder, relay = folder_host.get_data_source(), relay_host.get_data_source()
    for query in ({}, {"PatientName": "DOE*"}, {"StudyDate": "20240101-"}, {"ModalitiesInStudy": "XC"}):
        want = [r["StudyInstanceUID"] for r in folder.query.studies.search(query)]
        assert [r["StudyInstanceUID"] for r in relay.query.studies.search(query)] == want and want, query
    for study in folder.query.studies.search():
        uid = study["StudyInstanceUID"]
        assert uid.startswith("2.25.")
        folder.retrieve.series.metadata(uid)
        relay.retrieve.series.metadata(uid)
        want = {i["SOPInstanceUID"]: i for s in folder_host.metadata_store.get_study(uid)["series"]
                for i in s["instances"]}  # fmt: skip
        got = {i["SOPInstanceUID"]: i for s in relay_host.metadata_store.get_study(uid)["series"]
               for i in s["instances"]}  # fmt: skip
        assert set(got) == set(want)
        for sop, instance in got.items():
            assert comparable(instance) == comparable(want[sop]), sop


def test_frames_and_rendered_images_are_the_files_pixels(
    chain: tuple[Host, Host, Served, dict[str, np.ndarray]],
) -> None:
    folder_host, relay_host, server, pixels = chain
    folder, relay = folder_host.get_data_source(), relay_host.get_data_source()
    (study,) = folder.query.studies.search({"PatientName": "DOE*"})
    uid = study["StudyInstanceUID"]
    for instance in folder.query.instances.search(uid):
        series, sop = instance["SeriesInstanceUID"], instance["SOPInstanceUID"]
        frames = relay.retrieve.frames(uid, series, sop, [1])
        assert frames == folder.retrieve.frames(uid, series, sop, [1])
        name = folder.helpers.image_path(sop).name
        original = pixels[name]
        assert frames[0] == original.tobytes()  # native DICOM order: rows, columns, RGB interleaved
        rendered = requests.get(
            f"{server.url}/images/dicom-web/studies/{uid}/series/{series}/instances/{sop}/rendered", timeout=30
        )
        assert rendered.status_code == 200
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(rendered.content))), original), name


def test_dicomweb_client_reads_the_folder(chain: tuple[Host, Host, Served, dict[str, np.ndarray]]) -> None:
    dicomweb_client = pytest.importorskip("dicomweb_client")
    folder_host, _, server, _ = chain
    folder = folder_host.get_data_source()
    client = dicomweb_client.DICOMwebClient(f"{server.url}/images/dicom-web")
    (hand,) = client.search_for_studies(search_filters={"PatientName": "ROE^ANN"})
    uid = hand["0020000D"]["Value"][0]
    (metadata,) = client.retrieve_study_metadata(uid)
    assert metadata["00080060"]["Value"] == ["XC"] and metadata["00280004"]["Value"] == ["YBR_FULL_422"]
    series, sop = metadata["0020000E"]["Value"][0], metadata["00080018"]["Value"][0]
    assert client.retrieve_instance_frames(uid, series, sop, [1]) == folder.retrieve.frames(uid, series, sop, [1])
    assert client.retrieve_bulkdata(metadata["7FE00010"]["BulkDataURI"]) == folder.retrieve.frames(
        uid, series, sop, [1]
    )
