"""A large STOW through the gateway stays on disk: its parts are views of the spooled file.

Past ``stow_spool_bytes`` the body goes to a temporary file; its parts are ``memoryview`` slices
of an ``mmap`` of it, read by header only in the gateway and written (dicomlocal) or sent one
batch at a time (dicomweb) by the source. ``tracemalloc`` measures the Python allocations
during the request: well below the body's size, and every instance is stored byte for byte.
"""

from __future__ import annotations

import io
import mmap
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pytest
from datasources import Host
from datasources import multipart as mp
from datasources.buffers import reader
from datasources.gateway import create_app
from datasources.gateway.stow import spooled_parts

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from support.dicomgen import StudySpec, dataset_to_bytes, make_study

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={}'


def instances(seed: str, count: int, side: int) -> list[tuple[Any, bytes]]:
    """``count`` instances of ``side`` x ``side`` 16-bit pixels: (dataset, Part-10 bytes)."""
    datasets = make_study(StudySpec(seed, n_instances=count, rows=side, cols=side, private=False))
    return [(ds, dataset_to_bytes(ds)) for ds in datasets]


def stow_measured(client: TestClient, url: str, body: bytes, boundary: str) -> tuple[Any, int]:
    """POST the body; the answer and the peak of Python allocations while it was handled."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        answer = client.post(url, content=body, headers={"Content-Type": STOW_TYPE.format(boundary)})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"STOW of {len(body)} bytes: peak of Python allocations {peak} bytes")
    return answer, peak


def test_mmap_parts_are_views_and_release_lets_the_map_close(tmp_path: Path) -> None:
    body, boundary = mp.build([(b"first", "application/dicom"), (b"x" * 100_000, "application/dicom")])
    (tmp_path / "body").write_bytes(body)
    with open(tmp_path / "body", "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        parts = mp.parse(view, STOW_TYPE.format(boundary))
        assert [type(p.content) for p in parts] == [memoryview, memoryview]
        assert parts[0].content == b"first" and parts[1].content.obj is view  # a slice of the map itself
        with pytest.raises(BufferError):
            view.close()  # the views hold it
        mp.release(parts)
    assert view.closed
    assert [type(p.content) for p in mp.parse(body, STOW_TYPE.format(boundary))] == [bytes, bytes]  # unchanged


def test_a_refused_mmap_body_leaves_no_view(tmp_path: Path) -> None:
    body, boundary = mp.build([(b"a", "application/dicom")] * 3)
    (tmp_path / "body").write_bytes(body[:-10])  # truncated: no closing boundary
    with open(tmp_path / "body", "rb") as fh:
        view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        with pytest.raises(Exception, match="truncated"):
            mp.parse(view, STOW_TYPE.format(boundary))
        view.close()  # no BufferError: the parts made before the error were released
    assert view.closed


def test_the_reader_reads_a_view_without_copying_it() -> None:
    _, data = instances("spool-reader", 1, 256)[0]
    view = memoryview(data)
    tracemalloc.start()
    try:
        from pydicom import dcmread

        with reader(view[10:]) as fp:
            assert fp.read(118) == data[10:128] and fp.tell() == 118
            assert fp.seek(-8, 2) == len(data) - 18 and fp.read() == data[-8:]
        with reader(view) as fp:
            ds = dcmread(fp, stop_before_pixels=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ds.Rows == 256 and "PixelData" not in ds
    assert peak < len(data) / 4, (peak, len(data))  # io.BytesIO(view) would copy the whole 128 KiB


def test_spooled_parts_keep_the_map_until_the_block_ends(tmp_path: Path) -> None:
    import tempfile

    body, boundary = mp.build([(b"y" * 5000, "application/dicom")] * 2)
    spool = tempfile.SpooledTemporaryFile(max_size=10)  # noqa: SIM115
    spool.write(body)
    assert spool._rolled  # type: ignore[attr-defined]
    with spool, spooled_parts(spool, STOW_TYPE.format(boundary), 10) as parts:
        assert all(isinstance(p.content, memoryview) for p in parts)
        kept = parts[0].content
    with pytest.raises(ValueError, match="released"):
        kept.tobytes()  # released on leaving the block, and the map closed


def local_host(tmp_path: Path) -> Host:
    (tmp_path / "store").mkdir()
    return Host({"dataSources": [
        {"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "local",
         "configuration": {"root": str(tmp_path / "store"), "cache": str(tmp_path / "index.sqlite")}},
    ], "defaultDataSourceName": "local"})  # fmt: skip


def test_a_40_mb_stow_into_dicomlocal_is_not_held_in_memory(tmp_path: Path) -> None:
    made = instances("spool-local", 80, 362) + instances("spool-local-2", 80, 362)  # 160 x 256 KiB: 42 MB
    body, boundary = mp.build([(data, "application/dicom") for _, data in made])
    assert len(body) > 40_000_000
    client = TestClient(create_app(local_host(tmp_path), stow_spool_bytes=256 << 10))
    answer, peak = stow_measured(client, "/local/dicom-web/studies", body, boundary)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["00081199"]["Value"]) == len(made)
    assert peak < len(body) / 4, f"peak {peak} bytes for a {len(body)}-byte body"
    for ds, data in made:
        stored = tmp_path / "store" / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        assert stored.read_bytes() == data


def test_a_40_mb_stow_to_orthanc_holds_one_batch_at_a_time(orthanc_empty: Any) -> None:
    made = [item for n in range(4) for item in instances(f"spool-pacs-{n}", 80, 256)]  # 320 x 128 KiB: 42 MB
    body, boundary = mp.build([(data, "application/dicom") for _, data in made])
    batch = sum(len(data) for _, data in made[:50])  # the dicomweb source sends 50 a request
    host = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
                                  "configuration": {"qidoRoot": orthanc_empty.dicomweb_url,
                                                    "wadoRoot": orthanc_empty.dicomweb_url}}]})  # fmt: skip
    client = TestClient(create_app(host, stow_spool_bytes=256 << 10))
    answer, peak = stow_measured(client, "/pacs/dicom-web/studies", body, boundary)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["00081199"]["Value"]) == len(made)
    assert peak < min(1.5 * batch, len(body) / 4), f"peak {peak} bytes; a batch is {batch}, the body {len(body)}"
    session = orthanc_empty.session
    for ds, data in made:
        (found,) = session.post(f"{orthanc_empty.url}/tools/lookup", data=ds.SOPInstanceUID, timeout=30).json()
        stored = session.get(f"{orthanc_empty.url}/instances/{found['ID']}/file", timeout=30)
        assert stored.status_code == 200 and stored.content == data  # byte for byte, as sent


def test_a_merge_forwards_the_views_to_its_default_member(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    host = Host({"dataSources": [
        {"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "local",
         "configuration": {"root": str(tmp_path / "store"), "cache": str(tmp_path / "index.sqlite")}},
        {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "sample",
         "configuration": {"bundled": "sample"}},
        {"namespace": "default.dataSourcesModule.merge", "sourceName": "all", "configuration": {
            "seriesMerge": {"dataSourceNames": ["local", "sample"], "defaultDataSourceName": "local"}}},
    ]})  # fmt: skip
    made = instances("spool-merge", 4, 128)
    body, boundary = mp.build([(data, "application/dicom") for _, data in made])
    client = TestClient(create_app(host, stow_spool_bytes=1024))
    answer = client.post("/all/dicom-web/studies", content=body, headers={"Content-Type": STOW_TYPE.format(boundary)})
    assert answer.status_code == 200, answer.text  # the parts were views of the spool, forwarded as they are
    more = instances("spool-merge-api", 2, 128)
    views = [memoryview(data) for _, data in more]  # and through the Python API
    assert [o.status for o in host.get_data_source("all").store.dicom(views).outcomes] == ["stored", "stored"]
    for ds, data in made + more:
        stored = tmp_path / "store" / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        assert stored.read_bytes() == data


def test_real_compressed_files_go_through_the_spool_byte_for_byte(tmp_path: Path) -> None:
    """pydicom's JPEG, JPEG 2000, JPEG-LS, RLE and deflated files as one STOW that goes to disk: each
    stored file is the file sent, and its first frame comes back with its own transfer syntax."""
    import pydicom
    from pydicom.encaps import generate_frames
    from support.compressed import write_compressed

    sent = write_compressed(tmp_path / "sent").files
    datas = [path.read_bytes() for path in sent]
    body, boundary = mp.build([(data, "application/dicom") for data in datas])
    client = TestClient(create_app(local_host(tmp_path), stow_spool_bytes=1024))  # far below the body: mmap parts
    answer = client.post("/local/dicom-web/studies", content=body, headers={"Content-Type": STOW_TYPE.format(boundary)})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["00081199"]["Value"]) == len(sent)
    for data in datas:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        assert (tmp_path / "store" / study / series / f"{sop}.dcm").read_bytes() == data
        ts = str(ds.file_meta.TransferSyntaxUID)
        frames = client.get(
            f"/local/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
            headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
        )
        assert frames.status_code == 200, (sop, frames.text)
        (part,) = mp.parse(frames.content, frames.headers["content-type"])
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            frames_count = int(ds.get("NumberOfFrames", 1) or 1)
            expected = next(generate_frames(ds.PixelData, number_of_frames=frames_count))
            assert part.transfer_syntax == ts, (sop, part.content_type)
            assert bytes(part.content).rstrip(b"\0") == expected.rstrip(b"\0"), sop
        else:  # the deflated file: native pixels, sent as Explicit VR Little Endian
            assert part.transfer_syntax == "1.2.840.10008.1.2.1"
            assert len(part.content) >= ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
