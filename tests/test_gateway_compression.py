"""The gateway's gzip (gateway/compression.py) on real uvicorn: pydicom's JPEG frames sent as they
are, native frames and JSON gzipped with each compressor sized to its body, Accept-Encoding read
with its q values, streamed answers deflated chunk by chunk, a body that would grow sent as is."""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests

pytest.importorskip("starlette")

from datasources import Host
from datasources import multipart as mp
from datasources.gateway import create_app
from datasources.gateway.compression import GZip, accepts_gzip, gzip_body, worth_compressing
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from test_gateway_support import served

FILES = {"native": "CT_small.dcm", "jpeg": "SC_rgb_jpeg_dcmtk.dcm", "jpeg2000": "MR_small_jp2klossless.dcm"}
ANY = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("gz")
    root = tmp / "files"
    root.mkdir()
    found = {}
    for kind, name in FILES.items():
        shutil.copy(get_testdata_file(name), root / name)
        ds = pydicom.dcmread(root / name)
        found[kind] = ds
    # a JPEG-labelled frame that gzip *would* shrink: compressed-or-not is read from the label
    ds = pydicom.dcmread(get_testdata_file(FILES["native"]))
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\0" * 20_000 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(root / "squeezable.dcm", enforce_file_format=True)
    found["squeezable"] = ds
    configuration = {"root": str(root), "cache": str(tmp / "index.sqlite")}
    host = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "local",
                                  "configuration": configuration}]})  # fmt: skip
    with served(create_app(host)) as gw:
        yield gw.url, found


def frame_url(base: str, ds: Any) -> str:
    return (f"{base}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}/frames/1")  # fmt: skip


def raw_get(url: str, **headers: str) -> requests.Response:
    """A GET whose body is left as sent (requests would inflate it)."""
    answer = requests.get(url, headers=headers, stream=True, timeout=30)
    answer.raw.decode_content = False
    answer._content = answer.raw.read()  # the bytes on the wire
    return answer


def test_encapsulated_frames_are_sent_as_they_are_and_native_ones_gzipped(gateway: Any) -> None:
    base, found = gateway
    for kind in ("jpeg", "jpeg2000", "squeezable"):
        ds = found[kind]
        answer = raw_get(frame_url(base, ds), Accept=ANY, **{"Accept-Encoding": "gzip, deflate, br"})
        assert answer.status_code == 200 and "content-encoding" not in answer.headers, kind
        (part,) = mp.parse(answer.content, answer.headers["Content-Type"])
        assert part.content == next(generate_frames(ds.PixelData, number_of_frames=1)), kind
        assert part.transfer_syntax == ds.file_meta.TransferSyntaxUID, kind
    ds = found["native"]
    answer = raw_get(frame_url(base, ds), Accept=ANY, **{"Accept-Encoding": "gzip"})
    assert answer.headers["content-encoding"] == "gzip" and "Accept-Encoding" in answer.headers["vary"]
    assert int(answer.headers["content-length"]) == len(answer.content)
    body = zlib.decompress(answer.content, 31)
    (part,) = mp.parse(body, answer.headers["Content-Type"])
    assert part.content == ds.PixelData and len(answer.content) < len(body)


def test_accept_encoding_is_read_with_its_q_values(gateway: Any) -> None:
    base, found = gateway
    url = frame_url(base, found["native"])
    for header, gzipped in [("gzip", True), ("GZIP;q=0.5", True), ("*", True), ("identity", False),
                            ("gzip;q=0", False), ("*, gzip;q=0", False), ("br", False), ("x-gzip", True)]:  # fmt: skip
        answer = raw_get(url, Accept=ANY, **{"Accept-Encoding": header})
        assert (answer.headers.get("content-encoding") == "gzip") is gzipped, header
    assert not accepts_gzip(b"deflate, gzip;q=0.000") and accepts_gzip(b"deflate, gzip;q=0.001")


def test_what_is_worth_compressing() -> None:
    assert worth_compressing("application/dicom+json")
    assert worth_compressing('multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1')
    assert worth_compressing('multipart/related; type="application/octet-stream"; transfer-syntax=*')
    assert not worth_compressing('multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50')
    assert not worth_compressing(
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.90'
    )
    # Orthanc names the transfer syntax inside the type
    assert not worth_compressing(
        'multipart/related; type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.80"; boundary=x'
    )
    assert not worth_compressing("image/png") and not worth_compressing("application/gzip")
    assert not worth_compressing('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1.99')


def test_a_sized_compressor_gives_the_body_back_at_about_the_same_size() -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    for body in (rng.normal(1000, 30, (64, 64)).astype("<u2").tobytes(), b"DICM" * 3000, bytes(range(256)) * 700):
        packed = gzip_body(body)
        full = zlib.compressobj(1, zlib.DEFLATED, 31)
        assert zlib.decompress(packed, 31) == body
        assert len(packed) <= len(full.compress(body) + full.flush()) * 1.02


def test_streamed_answers_are_deflated_per_chunk_and_a_body_that_would_grow_is_sent_as_is() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    chunks = [b"row %d\n" % i * 500 for i in range(3)] + [os.urandom(200_000) + b"x" * 200_000]

    async def stream(request: Any) -> StreamingResponse:
        async def body() -> Any:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), media_type="text/plain", headers={"Vary": "Origin"})

    async def noise(request: Any) -> Response:
        return Response(NOISE, media_type="application/octet-stream")

    NOISE = os.urandom(10_000)
    app = Starlette(routes=[Route("/stream", stream), Route("/noise", noise)], middleware=[Middleware(GZip)])
    with served(app) as gw:
        streamed = raw_get(f"{gw.url}/stream", **{"Accept-Encoding": "gzip"})
        noisy = raw_get(f"{gw.url}/noise", **{"Accept-Encoding": "gzip"})
    assert streamed.headers["content-encoding"] == "gzip" and "content-length" not in streamed.headers
    assert streamed.headers["vary"] == "Origin, Accept-Encoding"
    assert zlib.decompress(streamed.content, 31) == b"".join(chunks)
    assert "content-encoding" not in noisy.headers and noisy.content == NOISE  # gzip would only grow it


def test_json_answers_are_gzipped_and_equal_to_the_identity_ones(tmp_path: Path) -> None:
    host = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "sample",
                                  "configuration": {"bundled": "sample"}}]})  # fmt: skip
    with served(create_app(host)) as gw:
        url = f"{gw.url}/dicom-web/studies?includefield=all"
        packed = raw_get(url, **{"Accept-Encoding": "gzip"})
        plain = raw_get(url, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.content) >= 4096
    assert packed.headers["content-encoding"] == "gzip" and len(packed.content) < len(plain.content)
    assert zlib.decompress(packed.content, 31) == plain.content
