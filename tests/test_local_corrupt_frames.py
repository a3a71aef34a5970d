"""A local file that went bad after it was indexed: its frames are a typed error, never a 500.

A dicomlocal folder is indexed with good files (native and encapsulated, from pydicom's own test
files), then one file is overwritten on disk: with garbage, truncated in its header or in its
pixel data, with a broken encapsulated item, or deleted. ``retrieve.frames`` raises a
``datasources.errors`` type naming the file (``CorruptFileError``, a ``BackendDataError``; or
``NotFoundError`` when it is gone); the gateway answers 502 or 404 with a JSON error whose text
has no server-side path. The dimse source reads its cache files with the same helpers.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from datasources import Host
from datasources.errors import BackendDataError, CorruptFileError, DataSourcesError, NotFoundError
from datasources.gateway import create_app
from pydicom.data import get_testdata_file

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NATIVE = "CT_small.dcm"  # Explicit VR LE, 128 x 128 x 16 bits
ENCAPSULATED = "SC_rgb_rle_2frame.dcm"  # RLE Lossless, 2 frames
JPEG = "JPEG2000.dcm"


def pixel_offset(data: bytes) -> int:
    """Where the (7FE0,0010) element's value starts in a Part-10 file (explicit VR, OB/OW)."""
    at = data.rfind(b"\xe0\x7f\x10\x00")
    assert at > 0
    return at + 12  # tag 4, VR 2, reserved 2, length 4


def truncate_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def truncate_pixels(path: Path) -> None:
    data = path.read_bytes()
    start = pixel_offset(data)
    path.write_bytes(data[: start + (len(data) - start) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def broken_fragments(path: Path) -> None:
    """The first item after the Basic Offset Table is no longer an item (FFFE,E000)."""
    data = bytearray(path.read_bytes())
    start = pixel_offset(bytes(data))
    assert data[start : start + 4] == b"\xfe\xff\x00\xe0"  # the offset table's item
    table = int.from_bytes(data[start + 4 : start + 8], "little")
    first = start + 8 + table
    assert data[first : first + 4] == b"\xfe\xff\x00\xe0"
    data[first : first + 8] = b"\x12\x34\x56\x78\xff\xff\xff\x7f"
    path.write_bytes(bytes(data))


def huge_fragment(path: Path) -> None:
    """The first fragment says it is longer than the file."""
    data = bytearray(path.read_bytes())
    start = pixel_offset(bytes(data))
    table = int.from_bytes(data[start + 4 : start + 8], "little")
    first = start + 8 + table
    data[first + 4 : first + 8] = (0x7FFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Host, dict[str, Any], Path]:
    root = tmp_path / "files"
    root.mkdir()
    uids = {}
    for name in (NATIVE, ENCAPSULATED, JPEG):
        shutil.copy(get_testdata_file(name), root / name)
        ds = pydicom.dcmread(root / name, stop_before_pixels=True)
        uids[name] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    configuration = {"root": str(root), "cache": str(tmp_path / "index.sqlite")}
    entry = {"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "local", "configuration": configuration}
    host = Host({"dataSources": [entry]})
    source = host.get_data_source("local")
    source.initialize()
    for study, series, sop in uids.values():  # every file is good, as indexed
        assert source.retrieve.frames(study, series, sop, [1])[0]
    return host, uids, root


CASES: list[tuple[str, str, Callable[[Path], None]]] = [
    ("garbage", NATIVE, garbage),
    ("garbage", ENCAPSULATED, garbage),
    ("truncated header", NATIVE, truncate_header),
    ("truncated pixel data", NATIVE, truncate_pixels),
    ("truncated pixel data", ENCAPSULATED, truncate_pixels),
    ("truncated pixel data", JPEG, truncate_pixels),
    ("broken fragment item", ENCAPSULATED, broken_fragments),
    ("fragment longer than the file", JPEG, huge_fragment),
]


@pytest.mark.parametrize(("what", "name", "corrupt"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_corrupted_file_is_a_typed_error_and_a_502(
    folder: tuple[Host, dict[str, Any], Path], what: str, name: str, corrupt: Callable[[Path], None]
) -> None:
    host, uids, root = folder
    corrupt(root / name)
    study, series, sop = uids[name]
    with pytest.raises(CorruptFileError) as caught:
        host.get_data_source("local").retrieve.frames(study, series, sop, [1])
    assert isinstance(caught.value, BackendDataError)
    assert name in str(caught.value), str(caught.value)
    client = TestClient(create_app(host))
    answer = client.get(f"/local/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1")
    assert answer.status_code == 502, answer.text
    body = answer.json()
    assert body["type"] == "CorruptFileError" and body["status"] == 502
    assert str(root) not in answer.text and str(root.parent) not in answer.text  # no server-side path
    others = [n for n in uids if n != name]
    for other in others:  # the other files are still served
        o_study, o_series, o_sop = uids[other]
        good = client.get(f"/local/dicom-web/studies/{o_study}/series/{o_series}/instances/{o_sop}/frames/1")
        assert good.status_code == 200, (other, good.text)


def test_a_deleted_file_is_not_found_and_a_404(folder: tuple[Host, dict[str, Any], Path]) -> None:
    host, uids, root = folder
    (root / NATIVE).unlink()
    study, series, sop = uids[NATIVE]
    with pytest.raises(NotFoundError, match=NATIVE):
        host.get_data_source("local").retrieve.frames(study, series, sop, [1])
    answer = TestClient(create_app(host)).get(
        f"/local/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1"
    )
    assert answer.status_code == 404 and answer.json()["type"] == "NotFoundError"
    assert str(root) not in answer.text


def test_the_image_id_reader_is_typed_too(folder: tuple[Host, dict[str, Any], Path]) -> None:
    host, uids, root = folder
    source = host.get_data_source("local")
    sop = uids[ENCAPSULATED][2]
    image_id = source.get_image_ids_for_instance({"SOPInstanceUID": sop})
    broken_fragments(root / ENCAPSULATED)
    with pytest.raises(DataSourcesError, match=ENCAPSULATED):
        source.helpers.read_image_id(image_id)


@pytest.mark.parametrize("name", [NATIVE, ENCAPSULATED, JPEG])
def test_a_file_cut_anywhere_is_a_typed_error(folder: tuple[Host, dict[str, Any], Path], name: str) -> None:
    """Cut at 60 places from the preamble to the last byte: a typed error every time, and
    ``CorruptFileError`` for every cut inside the pixel data (but in the 8-byte delimiter that
    closes encapsulated data, after the last fragment: those frames are whole and served)."""
    host, uids, root = folder
    source = host.get_data_source("local")
    whole = (root / name).read_bytes()
    expected = source.retrieve.frames(*uids[name], [1])
    start = pixel_offset(whole)
    cuts = {*range(1, len(whole), max(1, len(whole) // 50)), *range(start, len(whole), (len(whole) - start) // 10 or 1)}
    for cut in sorted(cuts):
        (root / name).write_bytes(whole[:cut])
        try:
            got = source.retrieve.frames(*uids[name], [1])
        except (CorruptFileError, NotFoundError) as exc:
            assert name in str(exc), (cut, str(exc))
            if cut > start:
                assert isinstance(exc, CorruptFileError), (cut, str(exc))
        except DataSourcesError as exc:  # pragma: no cover - would be a wrong type
            pytest.fail(f"cut at {cut}: {type(exc).__name__}: {exc}")
        else:  # only the encapsulated data's closing delimiter was cut: the frame itself is whole
            assert cut > len(whole) - 8 and whole[-8:-4] == b"\xfe\xff\xdd\xe0", f"cut at {cut} still gave frames"
            assert got == expected


def test_padding_after_the_last_element_is_still_served(folder: tuple[Host, dict[str, Any], Path]) -> None:
    host, uids, root = folder
    before = host.get_data_source("local").retrieve.frames(*uids[NATIVE], [1])
    with open(root / NATIVE, "ab") as fh:
        fh.write(b"\0\0\0")  # a few bytes after the pixel data: not an element, not a truncation
    assert host.get_data_source("local").retrieve.frames(*uids[NATIVE], [1]) == before


def test_bulk_data_of_a_corrupted_file_is_a_502(folder: tuple[Host, dict[str, Any], Path]) -> None:
    host, uids, root = folder
    client = TestClient(create_app(host))
    study, series, sop = uids[NATIVE]
    metadata = client.get(f"/local/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata").json()
    uri = metadata[0]["7FE00010"]["BulkDataURI"]
    assert client.get(uri).status_code == 200
    truncate_pixels(root / NATIVE)
    answer = client.get(uri)
    assert answer.status_code == 502 and answer.json()["type"] == "CorruptFileError", answer.text
    assert str(root) not in answer.text
