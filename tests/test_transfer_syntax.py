"""Real compressed frames through the gateway, cold and with its metadata cache expired.

For every compressed sample (and the generated multi-frame ones) behind each source, as a
DICOMweb viewer asks for them: with ``transfer-syntax=*`` the bytes are pydicom's
``generate_frames`` output and the label the file's transfer syntax; asked for native, the
frame decodes to pydicom's ``pixel_array``; asked for its own single-part image type, the bytes
as stored; asked for what cannot be served, a 406 listing what can.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import test_conformance as conformance
from datasources import multipart
from datasources.gateway import create_app
from datasources.transfer import EXPLICIT_LE, NATIVE, dataset_frames, media_type_of
from starlette.testclient import TestClient

files = conformance.files  # the module's data: compressed samples and a native study
OHIF = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
NATIVE_ONLY = 'multipart/related; type="application/octet-stream"'


def read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def parts(response: Any) -> list[multipart.Part]:
    assert response.status_code == 200, response.text
    return multipart.parse(response.content, response.headers["content-type"])


def pixels(ds: pydicom.Dataset, index: int) -> np.ndarray:
    array = ds.pixel_array
    return array[index] if int(ds.get("NumberOfFrames") or 1) > 1 else array


@pytest.fixture(scope="module", params=["dicomweb", "dicomlocal", "dicomjson", "merge"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> conformance.Target:
    return conformance.base_target(request.param, request, tmp_path_factory.mktemp(f"ts-{request.param}"))


@pytest.mark.parametrize("ttl", [30, 0], ids=["cold", "expired"])
def test_compressed_frames_through_the_gateway(source: conformance.Target, files: Any, ttl: float) -> None:
    _, compressed, _ = files
    client = TestClient(create_app(source.host, metadata_ttl=ttl))  # a fresh gateway: nothing cached yet
    root = f"/{source.name}/dicom-web"
    checked = 0
    for path in compressed:
        ds = read(path)
        ts = str(ds.file_meta.TransferSyntaxUID)
        if source.name == "orthanc" and ts == "1.2.840.10008.1.2.1.99":
            continue  # Orthanc 1.10 answers 500 for frames of a deflated instance
        expected = dataset_frames(ds)
        numbers = ",".join(str(n) for n in range(1, len(expected) + 1))
        url = f"{root}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        label = EXPLICIT_LE if ts in NATIVE else ts
        stored = parts(client.get(f"{url}/frames/{numbers}", headers={"Accept": OHIF}))
        assert [p.content for p in stored] == [bytes(f) for f in expected], path.name
        assert {p.content_type for p in stored} == {f"application/octet-stream; transfer-syntax={label}"}, path.name
        native = parts(client.get(f"{url}/frames/{numbers}", headers={"Accept": NATIVE_ONLY}))
        assert {p.content_type for p in native} == {f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"}
        for index, part in enumerate(native):
            reference = pixels(ds, index)
            decoded = np.frombuffer(part.content, dtype=reference.dtype.newbyteorder("<")).reshape(reference.shape)
            assert np.array_equal(decoded, reference), f"{path.name} frame {index + 1}"
        if ts not in NATIVE:
            media = media_type_of(ts)
            single = client.get(f"{url}/frames/1", headers={"Accept": media})
            assert single.status_code == 200 and single.content == bytes(expected[0])
            assert single.headers["content-type"] == f"{media}; transfer-syntax={ts}"
            own = parts(client.get(f"{url}/frames/1", headers={"Accept": f'multipart/related; type="{media}"'}))
            assert own[0].content == bytes(expected[0]) and own[0].content_type == f"{media}; transfer-syntax={ts}"
            other = "image/jls" if media != "image/jls" else "image/jp2"
            refused = client.get(f"{url}/frames/1", headers={"Accept": f'multipart/related; type="{other}"'})
            assert refused.status_code == 406 and f"transfer-syntax={EXPLICIT_LE}" in refused.json()["error"]
        checked += 1
    assert checked >= 15


def test_q_values_choose_between_native_and_stored(source: conformance.Target, files: Any) -> None:
    _, compressed, _ = files
    ds = next(read(p) for p in compressed if str(read(p).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.90")
    client = TestClient(create_app(source.host))
    url = (
        f"/{source.name}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )
    prefer_native = f"{OHIF}; q=0.5, {NATIVE_ONLY}; transfer-syntax={EXPLICIT_LE}"
    (part,) = parts(client.get(url, headers={"Accept": prefer_native}))
    assert part.content_type.endswith(EXPLICIT_LE) and len(part.content) == ds.Rows * ds.Columns * 2
    prefer_stored = f'multipart/related; type="image/jp2"; q=0.9, {NATIVE_ONLY}; q=0.1'
    (part,) = parts(client.get(url, headers={"Accept": prefer_stored}))
    assert part.content == bytes(dataset_frames(ds)[0]) and part.content_type.startswith("image/jp2;")
