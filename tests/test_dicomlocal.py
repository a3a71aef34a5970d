"""The dicomlocal source over real folders of DICOM files written with pydicom.

Each test builds its own folder: three studies (one multi-frame, one in a sub-folder), plus
files that must be skipped, never fatal: plain text, an empty ``.dcm``, a file with the DICM
marker and garbage after it, symbolic links to a file and a folder outside the root.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from datasources import Host
from datasources.errors import (
    BackendError,
    ConfigurationError,
    InvalidQueryError,
    NotFoundError,
    NotSupportedError,
    UnsafePathError,
)
from datasources.matching import filter_records
from datasources.naturalize import from_pydicom
from datasources.query import parse_search
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from support.dicomgen import StudySpec, dataset_to_bytes, make_study, write_datasets

NAMESPACE = "default.dataSourcesModule.dicomlocal"
INDEX_NAME = ".datasources-index.sqlite"

LEE = StudySpec("local-lee", "LEE^ANNA^K", "PAT0001", "CT", 2, 3, "20200115", "CT CHEST W/O CONTRAST")
DOE = StudySpec("local-doe", "DOE^JOHN", "PAT0002", "MR", 1, 1, "20210301", "MR BRAIN", frames=4, accession="ACC0002")
GARCIA = StudySpec("local-garcia", "GARCIA^MARIA", "PAT0003", "CT", 1, 2, "20230520", "CT ABDOMEN", accession="ACC0003")


def host_for(root: Path, **configuration: Any) -> Host:
    return Host.from_config(
        {
            "dataSources": [
                {"namespace": NAMESPACE, "sourceName": "local", "configuration": {"root": str(root), **configuration}}
            ]
        }
    )


def build_folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_datasets(make_study(LEE), root / "lee")
    write_datasets(make_study(DOE), root / "nested" / "doe")
    write_datasets(make_study(GARCIA), root)
    (root / "notes.txt").write_text("not DICOM at all\n")
    (root / "empty.dcm").write_bytes(b"")
    (root / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"garbage" * 10)
    outside = tmp_path / "outside"
    write_datasets(make_study(StudySpec("local-outside", "OUT^SIDE", n_instances=1)), outside)
    os.symlink(next(outside.glob("*.dcm")), root / "outside-file.dcm")
    os.symlink(outside, root / "outside-folder")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return build_folder(tmp_path)


@pytest.fixture
def host(root: Path) -> Host:
    return host_for(root)


@pytest.fixture
def ds(host: Host) -> Any:
    return host.get_data_source("local")


def uids(rows: list[dict[str, Any]], key: str = "StudyInstanceUID") -> list[str]:
    return [r[key] for r in rows]


def files_of(spec: StudySpec, root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*.dcm") if p.is_file() and not p.is_symlink() and _study_of(p) == spec.study_uid
    )


def _study_of(path: Path) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    except Exception:
        return None


# -- configuration -------------------------------------------------------------------------


def test_factory_does_no_io(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    host = host_for(missing)  # the factory must not look at the folder
    ds = host.get_data_source("local")
    assert not missing.exists()
    with pytest.raises(ConfigurationError, match="not a folder"):
        ds.query.studies.search()
    write_datasets(make_study(GARCIA), missing)
    host = host_for(missing)
    assert not (missing / INDEX_NAME).exists()
    assert len(host.get_data_source("local").query.studies.search()) == 1
    assert (missing / INDEX_NAME).is_file()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("root", 5),
        ("recursive", "yes"),
        ("followSymlinks", 1),
        ("cache", True),
        ("friendlyName", 3),
        ("readOnly", None),
    ],
)
def test_wrong_types_name_the_key(tmp_path: Path, key: str, value: Any) -> None:
    configuration = {"root": str(tmp_path), key: value}
    if value is None:  # None means "the default": no error
        host_for(tmp_path, **{key: value})
        return
    with pytest.raises(ConfigurationError, match=key):
        Host.from_config(
            {"dataSources": [{"namespace": NAMESPACE, "sourceName": "local", "configuration": configuration}]}
        )


def test_root_is_required_and_unknown_keys_are_warned(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="root"):
        Host.from_config({"dataSources": [{"namespace": NAMESPACE, "sourceName": "l", "configuration": {}}]})
    with pytest.warns(UserWarning, match="'colour'"):
        host_for(tmp_path, colour="blue")


def test_get_config_is_a_plain_copy(root: Path) -> None:
    ds = host_for(root, friendlyName="My folder", readOnly=True).get_data_source("local")
    config = ds.get_config()
    assert config["friendlyName"] == "My folder"
    assert config["root"] == str(root)
    assert config["dicomUploadEnabled"] is False
    json.dumps(config)


def test_cache_folder_holds_the_index(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = host_for(root, cache=str(cache)).get_data_source("local")
    assert len(ds.query.studies.search()) == 3
    assert not (root / INDEX_NAME).exists()
    index_file = Path(ds.helpers.index_file())
    assert index_file.parent == cache and index_file.is_file()
    # a second source over the same root and cache reuses the index: nothing is read again
    again = host_for(root, cache=str(cache)).get_data_source("local")
    assert again.helpers.reindex().read == []


# -- indexing and problems ---------------------------------------------------------------


def test_problems_are_reported_and_skipped(ds: Any) -> None:
    assert sorted(uids(ds.query.studies.search())) == sorted([LEE.study_uid, DOE.study_uid, GARCIA.study_uid])
    problems = {p["path"]: p["reason"] for p in ds.helpers.problems()}
    assert problems.keys() == {"notes.txt", "empty.dcm", "broken.dcm", "outside-file.dcm", "outside-folder"}
    assert "not a DICOM file" in problems["notes.txt"]
    assert "not a DICOM file" in problems["empty.dcm"]
    assert "not an instance" in problems["broken.dcm"]  # a file meta group and nothing else
    assert "symbolic link" in problems["outside-file.dcm"]
    assert "symbolic link" in problems["outside-folder"]


def test_symlinks_followed_only_inside_the_root(root: Path) -> None:
    garcia = files_of(GARCIA, root)[0]
    os.symlink(garcia, root / "alias.dcm")
    os.symlink(root / "lee", root / "lee-link")
    ds = host_for(root, followSymlinks=True).get_data_source("local")
    assert len(ds.query.studies.search()) == 3
    problems = {p["path"]: p["reason"] for p in ds.helpers.problems()}
    assert "outside the root" in problems["outside-file.dcm"]
    assert "outside the root" in problems["outside-folder"]
    assert "duplicate SOPInstanceUID" in problems["alias.dcm"]
    assert "lee-link" not in problems  # the folder it points at is indexed once, not twice
    assert ds.query.studies.search(StudyInstanceUID=LEE.study_uid)[0]["NumberOfStudyRelatedInstances"] == 6
    # reading through an inside link is allowed when following links, and only then
    data = ds.retrieve.bulk_data_uri(f"dicomfile:{root / 'alias.dcm'}?tag=7FE00010")
    assert data == pydicom.dcmread(garcia).PixelData
    plain = host_for(root).get_data_source("local")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        plain.retrieve.bulk_data_uri(f"dicomfile:{root / 'alias.dcm'}?tag=7FE00010")


def test_non_recursive_indexes_the_top_folder_only(root: Path) -> None:
    ds = host_for(root, recursive=False).get_data_source("local")
    assert uids(ds.query.studies.search()) == [GARCIA.study_uid]


def test_progress_callback(ds: Any, root: Path) -> None:
    ds.query.studies.search()
    write_datasets(make_study(StudySpec("local-progress", n_instances=2)), root / "more")
    calls: list[tuple[int, int | None, str]] = []
    report = ds.helpers.reindex(progress=lambda done, total, path: calls.append((done, total, path)))
    reading = [c for c in calls if c[1] is not None]
    assert [c[0] for c in reading] == [1, 2] and all(c[1] == 2 for c in reading)
    assert {c[2] for c in reading} == set(report.indexed) == set(report.read)
    assert any(c[1] is None for c in calls)  # listing the folder reports too


def test_incremental_reindex_rereads_only_what_changed(ds: Any, root: Path) -> None:
    ds.query.studies.search()
    lee = files_of(LEE, root)
    garcia = files_of(GARCIA, root)
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731

    touched, modified, deleted, kept = lee[0], lee[1], lee[2], garcia[0]
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    changed = pydicom.dcmread(modified)
    changed.PatientName = "LEE^ANNA^CHANGED"
    modified.write_bytes(dataset_to_bytes(changed))
    deleted.unlink()
    added = write_datasets(make_study(StudySpec("local-added", "NEW^PATIENT", n_instances=1)), root / "added")[0]
    # an unchanged file (same size and mtime) is not read again: garbage in it goes unnoticed
    st = kept.stat()
    kept.write_bytes(b"X" * st.st_size)
    os.utime(kept, ns=(st.st_atime_ns, st.st_mtime_ns))

    report = ds.helpers.reindex()
    assert sorted(report.read) == sorted(rel(p) for p in (touched, modified, added))
    assert sorted(report.updated) == sorted([rel(touched), rel(modified)])
    assert report.indexed == [rel(added)]
    assert report.removed == [rel(deleted)]
    assert report.unchanged >= 5
    assert ds.query.studies.search(PatientName="NEW^PATIENT")
    assert ds.query.studies.search(StudyInstanceUID=LEE.study_uid)[0]["NumberOfStudyRelatedInstances"] == 5
    assert ds.query.studies.search(StudyInstanceUID=GARCIA.study_uid)[0]["NumberOfStudyRelatedInstances"] == 2
    assert ds.helpers.reindex().read == []  # and now nothing changed

    # a file turned into garbage with a new size is read, dropped, and reported
    kept.write_bytes(b"Y" * 100)
    report = ds.helpers.reindex()
    assert report.read == [rel(kept)] and report.removed == [rel(kept)]
    assert any(p["path"] == rel(kept) for p in ds.helpers.problems())


def _run_without_root_powers(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command for which file permissions apply: as root, without the DAC override capabilities."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable to root")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    return subprocess.run(
        [*prefix, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120, check=False
    )


@pytest.fixture
def world_tmp() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="dicomlocal-perm-"))
    try:
        yield folder
    finally:
        for path in folder.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder)


def test_unreadable_file_and_read_only_root(world_tmp: Path) -> None:
    """chmod 000 stops nobody running as root, so as root the check runs without CAP_DAC_*."""
    root = world_tmp / "data"
    write_datasets(make_study(GARCIA), root)
    write_datasets(make_study(DOE), root / "sub")
    secret = files_of(GARCIA, root)[0]
    secret.chmod(0o000)
    root.chmod(0o555)  # read-only: the index must go to the cache folder
    cache_home = world_tmp / "cache"
    command = [sys.executable, "-m", "datasources", "index", str(root), "--json"]
    result = _run_without_root_powers(command, {"XDG_CACHE_HOME": str(cache_home)})
    if os.geteuid() == 0 and "Operation not permitted" in result.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["instances"] == 2
    assert [s["path"] for s in report["skipped"]] == [secret.name]
    assert "cannot read" in report["skipped"][0]["reason"]
    assert Path(report["indexFile"]).parent == cache_home / "datasources"
    assert not (root / INDEX_NAME).exists()

    # an unreadable verdict is not cached: readable again (same mtime), the file is read and indexed
    secret.chmod(0o644)
    result = _run_without_root_powers(command, {"XDG_CACHE_HOME": str(cache_home)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["indexed"] == [secret.name] and report["instances"] == 3 and report["skipped"] == []

    # a sub-folder that cannot be listed is reported; its indexed files are not taken for deleted
    (root / "sub").chmod(0o000)
    result = _run_without_root_powers(command, {"XDG_CACHE_HOME": str(cache_home)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(s["path"], s["reason"][:22]) for s in report["skipped"]] == [("sub", "cannot list the folder")]
    assert report["removed"] == [] and report["instances"] == 3


# -- never outside the root --------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "dicomfile:{root}/../outside/{name}?tag=7FE00010",
        "dicomfile:../outside/{name}",
        "dicomfile:/etc/hostname",
        "file:///etc/hostname",
        "dicomfile:{root}/outside-file.dcm?tag=7FE00010",
        "dicomfile:{root}/outside-folder/{name}",
        "dicomfile:{root}/lee/..%2F..%2Foutside/{name}",
        "http://127.0.0.1:9/x.dcm",
    ],
)
def test_paths_outside_the_root_are_refused(ds: Any, root: Path, uri: str) -> None:
    name = next((root.parent / "outside").glob("*.dcm")).name
    target = uri.format(root=root, name=name)
    with pytest.raises(UnsafePathError):
        ds.retrieve.bulk_data_uri(target)
    with pytest.raises(UnsafePathError):
        ds.helpers.path_for_image_id(target)


def test_store_refuses_unsafe_uids(ds: Any, root: Path, tmp_path: Path) -> None:
    evil = make_study(StudySpec("local-evil", n_instances=1))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UID, as it should
        evil.StudyInstanceUID = "../../escaped"
    result = ds.store.dicom(evil)
    assert [o.status for o in result.outcomes] == ["failed"]
    assert "StudyInstanceUID" in result.outcomes[0].reason
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.rglob("*escaped*"))


# -- search ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["GARCIA", "DOE", "LEE"]),  # newest first
        ({"PatientName": "lee*"}, ["LEE"]),
        ({"PatientName": "*MARIA"}, ["GARCIA"]),
        ({"PatientName": "G?RCIA*"}, ["GARCIA"]),
        ({"PatientName": "LEE"}, []),  # no wildcard: the whole name
        ({"patientName": "DOE^JOHN"}, ["DOE"]),
        ({"StudyDate": "20210101-"}, ["GARCIA", "DOE"]),
        ({"StudyDate": "-20201231"}, ["LEE"]),
        ({"startDate": "20210101", "endDate": "20221231"}, ["DOE"]),
        ({"StudyDate": "20200115"}, ["LEE"]),
        ({"ModalitiesInStudy": "MR"}, ["DOE"]),
        ({"ModalitiesInStudy": "CT\\MR"}, ["GARCIA", "DOE", "LEE"]),
        ({"StudyInstanceUID": "{LEE}\\{GARCIA}"}, ["GARCIA", "LEE"]),
        ({"StudyInstanceUID": ["{DOE}", "{LEE}"]}, ["DOE", "LEE"]),
        ({"StudyInstanceUID": "{LEE}*"}, ["LEE"]),
        ({"AccessionNumber": "acc0003"}, ["GARCIA"]),
        ({"PatientID": "PAT0002"}, ["DOE"]),
        ({"StudyDescription": "ct*"}, ["GARCIA", "LEE"]),
        ({"PatientName": "anna", "fuzzymatching": True}, ["LEE"]),
        ({"limit": 1, "offset": 1}, ["DOE"]),
        ({"ModalitiesInStudy": "CT", "limit": 1}, ["GARCIA"]),
    ],
)
def test_study_search(ds: Any, filters: dict[str, Any], expected: list[str]) -> None:
    names = {"LEE": LEE.study_uid, "DOE": DOE.study_uid, "GARCIA": GARCIA.study_uid}

    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value.format(**names) if isinstance(value, str) else value

    filters = {k: fill(v) for k, v in filters.items()}
    rows = ds.query.studies.search(filters)
    assert uids(rows) == [names[n] for n in expected]
    # and exactly what the shared matching module says over every study
    everything = ds.query.studies.search()
    query = parse_search("study", filters)
    assert uids(rows) == uids(filter_records(everything, query, fuzzy=query.fuzzymatching))


def test_study_records_carry_what_qido_returns(ds: Any) -> None:
    row = ds.query.studies.search(StudyInstanceUID=LEE.study_uid)[0]
    assert row["PatientName"] == {"Alphabetic": "LEE^ANNA^K"}
    assert row["ModalitiesInStudy"] == ["CT"]
    assert row["NumberOfStudyRelatedSeries"] == 2
    assert row["NumberOfStudyRelatedInstances"] == 6
    assert row["StudyDescription"] == "CT CHEST W/O CONTRAST"


def test_series_and_instance_search(ds: Any) -> None:
    series = ds.query.series.search(LEE.study_uid)
    assert uids(series, "SeriesInstanceUID") == [LEE.series_uid(0), LEE.series_uid(1)]
    assert [s["NumberOfSeriesRelatedInstances"] for s in series] == [3, 3]
    assert uids(ds.query.series.search(LEE.study_uid, {"SeriesNumber": "2"}), "SeriesInstanceUID") == [
        LEE.series_uid(1)
    ]
    assert ds.query.series.search(LEE.study_uid, Modality="MR") == []
    instances = ds.query.instances.search(LEE.study_uid, LEE.series_uid(1))
    assert uids(instances, "SOPInstanceUID") == [LEE.sop_uid(1, i) for i in range(3)]
    found = ds.query.instances.search(LEE.study_uid, None, {"InstanceNumber": "3"})
    assert uids(found, "SOPInstanceUID") == [LEE.sop_uid(0, 2), LEE.sop_uid(1, 2)]
    assert ds.query.series.search("1.2.3") == []
    with pytest.raises(InvalidQueryError, match="PatientName"):
        ds.query.studies.search(patientname="x")


# -- metadata ----------------------------------------------------------------------------


def test_metadata_matches_pydicom(host: Host, ds: Any, root: Path) -> None:
    summaries = ds.retrieve.series.metadata(LEE.study_uid)
    assert list(summaries) == [LEE.series_uid(0), LEE.series_uid(1)]
    study = host.metadata_store.get_study(LEE.study_uid)
    assert study is not None and study["isLoaded"] is True
    instances = [i for s in study["series"] for i in s["instances"]]
    assert len(instances) == 6
    for path in files_of(LEE, root):
        full = pydicom.dcmread(path)
        expected = from_pydicom(full)
        got = host.metadata_store.get_instance(LEE.study_uid, str(full.SeriesInstanceUID), str(full.SOPInstanceUID))
        assert got is not None
        for key, value in expected.items():
            if key in ("PixelData", "_vrMap"):
                continue
            assert got[key] == value, key
        assert got["_vrMap"] == expected["_vrMap"]
        assert got["AvailableTransferSyntaxUID"] == [full.file_meta.TransferSyntaxUID]  # VM 1-n: a list
        assert got["imageId"] == got["url"] == f"dicomfile:{path}"
        assert host.metadata_store.get_instance_by_image_id(got["imageId"]) is got
        assert ds.retrieve.bulk_data_uri(got["PixelData"]) == full.PixelData
        assert ds.retrieve.bulk_data_uri(got["PixelData"]["BulkDataURI"]) == full.PixelData


def test_large_binaries_become_bulk_data_uris_also_in_sequences(host: Host, ds: Any, root: Path) -> None:
    dataset = make_study(StudySpec("local-bulk", n_instances=1))[0]
    big = bytes(range(256)) * 8  # over the 1 KiB (base64) inline threshold
    item = Dataset()
    item.add_new(0x00091010, "LO", "DATASOURCES TESTS 1.0")
    item.add_new(0x00420011, "OB", big)
    dataset.add_new(0x00400275, "SQ", Sequence([Dataset(), item]))  # RequestAttributesSequence
    path = root / "bulk.dcm"
    path.write_bytes(dataset_to_bytes(dataset))
    ds.helpers.reindex()
    ds.retrieve.series.metadata(str(dataset.StudyInstanceUID))
    got = host.metadata_store.get_instance(
        str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID)
    )
    assert got is not None
    uri = got["RequestAttributesSequence"][1]["EncapsulatedDocument"]["BulkDataURI"]
    assert uri == f"dicomfile:{path}?tag=00400275.1.00420011"
    assert ds.retrieve.bulk_data_uri(uri) == big
    with pytest.raises(NotFoundError):
        ds.retrieve.bulk_data_uri(f"dicomfile:{path}?tag=00400275.5.00420011")


def test_metadata_is_all_or_nothing(host: Host, ds: Any, root: Path) -> None:
    ds.query.studies.search()
    victim = next(p for p in files_of(LEE, root) if str(LEE.series_uid(1)) in _series_of(p))
    victim.unlink()  # after indexing, before the retrieve
    with pytest.raises(NotFoundError, match="re-index"):
        ds.retrieve.series.metadata(LEE.study_uid)
    assert host.metadata_store.get_study(LEE.study_uid) is None
    # only the intact series asked for: fine
    ds.retrieve.series.metadata(LEE.study_uid, series_instance_uids=[LEE.series_uid(0)])
    study = host.metadata_store.get_study(LEE.study_uid)
    assert [s["SeriesInstanceUID"] for s in study["series"]] == [LEE.series_uid(0)]
    with pytest.raises(NotFoundError):
        ds.retrieve.series.metadata("1.2.3.4")
    with pytest.raises(NotFoundError):
        ds.retrieve.series.metadata(LEE.study_uid, series_instance_uids=["1.2.3"])


def _series_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def test_metadata_tasks_load_lazily(host: Host, ds: Any) -> None:
    tasks = ds.retrieve.series.metadata(LEE.study_uid, return_tasks=True)
    assert [t.metadata["SeriesInstanceUID"] for t in tasks] == [LEE.series_uid(0), LEE.series_uid(1)]
    series = host.metadata_store.get_series(LEE.study_uid, LEE.series_uid(1))
    assert series is not None and series["instances"] == []
    assert len(tasks[1].run()) == 3
    assert len(host.metadata_store.get_series(LEE.study_uid, LEE.series_uid(1))["instances"]) == 3
    assert host.metadata_store.get_series(LEE.study_uid, LEE.series_uid(0))["instances"] == []


# -- frames and image ids -----------------------------------------------------------------


def test_frames_and_image_ids_of_a_multiframe_instance(host: Host, ds: Any, root: Path) -> None:
    path = files_of(DOE, root)[0]
    full = pydicom.dcmread(path)
    size = full.Rows * full.Columns * 2
    frames = ds.retrieve.frames(DOE.study_uid, DOE.series_uid(0), DOE.sop_uid(0, 0), [1, 4])
    assert frames == [full.PixelData[:size], full.PixelData[3 * size : 4 * size]]
    with pytest.raises(NotFoundError, match="4 frame"):
        ds.retrieve.frames(DOE.study_uid, DOE.series_uid(0), DOE.sop_uid(0, 0), 5)
    with pytest.raises(NotFoundError):
        ds.retrieve.frames(DOE.study_uid, LEE.series_uid(0), DOE.sop_uid(0, 0), 1)

    ds.retrieve.series.metadata(DOE.study_uid)
    series = host.metadata_store.get_series(DOE.study_uid, DOE.series_uid(0))
    ids = ds.get_image_ids_for_display_set(series)
    assert ids == [f"dicomfile:{path}?frame={n}" for n in range(4)]
    assert ds.helpers.read_image_id(ids[2]) == full.PixelData[2 * size : 3 * size]
    assert ds.get_image_ids_for_instance(series["instances"][0]) == f"dicomfile:{path}"
    assert ds.get_image_ids_for_instance({"SOPInstanceUID": DOE.sop_uid(0, 0)}, frame=1) == f"dicomfile:{path}?frame=1"
    assert ds.retrieve.bulk_data_uri(ids[3]) == full.PixelData[3 * size :]


def test_frames_of_encapsulated_data(ds: Any, root: Path) -> None:
    pytest.importorskip("numpy")
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    dataset = make_study(StudySpec("local-rle", n_instances=1, frames=3))[0]
    original = dataset.pixel_array
    dataset.compress(RLELossless)
    path = root / "rle.dcm"
    path.write_bytes(dataset_to_bytes(dataset))
    ds.helpers.reindex()
    study, series, sop = str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID)
    frames = ds.retrieve.frames(study, series, sop, [1, 2, 3])
    for n, frame in enumerate(frames):
        single = pydicom.dcmread(path)
        single.NumberOfFrames = 1
        single.PixelData = encapsulate([frame])
        assert (single.pixel_array == original[n]).all()


# -- store -------------------------------------------------------------------------------


def test_store_then_search(ds: Any, root: Path) -> None:
    ds.query.studies.search()
    new = make_study(StudySpec("local-stored", "STORED^ONE", n_series=1, n_instances=3))
    naturalized = from_pydicom(new[2], bulk_data_threshold=10**9)
    result = ds.store.dicom([new[0], dataset_to_bytes(new[1]), naturalized, b"not dicom"])
    assert [o.status for o in result.outcomes] == ["stored", "stored", "stored", "failed"]
    assert "not DICOM" in result.outcomes[3].reason
    for i, outcome in enumerate(result.outcomes[:3]):
        path = root / new[i].StudyInstanceUID / new[i].SeriesInstanceUID / f"{new[i].SOPInstanceUID}.dcm"
        assert outcome.sop_instance_uid == new[i].SOPInstanceUID
        assert outcome.retrieve_url == f"dicomfile:{path}"
        assert pydicom.dcmread(path).PixelData == new[i].PixelData
    assert not list(root.rglob(".datasources-tmp-*"))
    row = ds.query.studies.search(PatientName="STORED*")
    assert uids(row) == [new[0].StudyInstanceUID] and row[0]["NumberOfStudyRelatedInstances"] == 3
    # the next index pass finds them already indexed
    assert ds.helpers.reindex().read == []

    again = ds.store.dicom(new[0])
    assert again.outcomes[0].status == "failed" and "duplicate" in again.outcomes[0].reason


def test_store_never_overwrites_a_file(ds: Any, root: Path) -> None:
    ds.query.studies.search()
    dataset = make_study(StudySpec("local-clash", n_instances=1))[0]
    folder = root / dataset.StudyInstanceUID / dataset.SeriesInstanceUID
    folder.mkdir(parents=True)
    squatter = folder / f"{dataset.SOPInstanceUID}.dcm"
    squatter.write_text("someone else's file")
    result = ds.store.dicom(dataset)
    assert result.outcomes[0].status == "failed" and "already exists" in result.outcomes[0].reason
    assert squatter.read_text() == "someone else's file"
    assert not list(root.rglob(".datasources-tmp-*"))


def test_store_into_a_symlinked_folder_is_refused(ds: Any, root: Path, tmp_path: Path) -> None:
    dataset = make_study(StudySpec("local-linked", n_instances=1))[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / dataset.StudyInstanceUID)
    result = ds.store.dicom(dataset)
    assert result.outcomes[0].status == "failed" and "symbolic link" in result.outcomes[0].reason
    assert list(elsewhere.iterdir()) == []


def test_read_only_source_refuses_store(root: Path) -> None:
    ds = host_for(root, readOnly=True).get_data_source("local")
    with pytest.raises(NotSupportedError, match="readOnly"):
        ds.store.dicom(make_study(StudySpec("local-ro", n_instances=1))[0])


# -- reject ------------------------------------------------------------------------------


def test_reject_series_hides_it_from_the_index_only(host: Host, ds: Any, root: Path) -> None:
    ds.retrieve.series.metadata(LEE.study_uid)
    ds.reject.series(LEE.study_uid, LEE.series_uid(1))
    assert host.metadata_store.get_study(LEE.study_uid) is None  # dropped, reloads without it
    assert uids(ds.query.series.search(LEE.study_uid), "SeriesInstanceUID") == [LEE.series_uid(0)]
    row = ds.query.studies.search(StudyInstanceUID=LEE.study_uid)[0]
    assert (row["NumberOfStudyRelatedSeries"], row["NumberOfStudyRelatedInstances"]) == (1, 3)
    assert ds.query.instances.search(LEE.study_uid, LEE.series_uid(1)) == []
    assert len(files_of(LEE, root)) == 6  # the files stay
    ds.retrieve.series.metadata(LEE.study_uid)
    assert [s["SeriesInstanceUID"] for s in host.metadata_store.get_study(LEE.study_uid)["series"]] == [
        LEE.series_uid(0)
    ]
    with pytest.raises(NotFoundError):
        ds.retrieve.frames(LEE.study_uid, LEE.series_uid(1), LEE.sop_uid(1, 0), 1)

    # it survives a re-index and a new host over the same folder
    ds.helpers.reindex()
    other = host_for(root).get_data_source("local")
    assert len(other.query.series.search(LEE.study_uid)) == 1
    assert other.helpers.rejected_series() == [(LEE.study_uid, LEE.series_uid(1))]

    assert ds.helpers.restore_series(LEE.study_uid, LEE.series_uid(1)) is True
    assert len(ds.query.series.search(LEE.study_uid)) == 2
    with pytest.raises(NotFoundError):
        ds.reject.series(LEE.study_uid, "1.2.3")


def test_rejecting_every_series_hides_the_study(ds: Any) -> None:
    ds.reject.series(DOE.study_uid, DOE.series_uid(0))
    assert DOE.study_uid not in uids(ds.query.studies.search())
    assert ds.get_study_instance_uids(query={"StudyInstanceUIDs": f"{DOE.study_uid},{LEE.study_uid}"}) == [
        LEE.study_uid
    ]


# -- the rest ----------------------------------------------------------------------------


def test_study_instance_uids_and_delete(host: Host, ds: Any) -> None:
    assert ds.get_study_instance_uids() == [GARCIA.study_uid, DOE.study_uid, LEE.study_uid]
    assert ds.get_study_instance_uids(params={"StudyInstanceUIDs": "1.2.3"}) == []
    ds.retrieve.series.metadata(GARCIA.study_uid)
    ds.delete_study_metadata(GARCIA.study_uid)
    assert host.metadata_store.get_study(GARCIA.study_uid) is None
    assert host.initialize_data_source("local") == [GARCIA.study_uid, DOE.study_uid, LEE.study_uid]


def test_index_on_initialize_false_only_opens_the_index(root: Path) -> None:
    ds = host_for(root, indexOnInitialize=False).get_data_source("local")
    assert ds.query.studies.search() == []
    assert len(ds.helpers.reindex().indexed) == 9
    assert len(ds.query.studies.search()) == 3


def test_concurrent_searches_while_indexing_and_storing(ds: Any, root: Path) -> None:
    ds.query.studies.search()
    for i in range(3):
        write_datasets(make_study(StudySpec(f"local-thread-{i}", n_instances=4)), root / f"t{i}")
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                rows = ds.query.studies.search(ModalitiesInStudy="CT")
                counts.append(len(rows))
                for row in rows[:2]:
                    ds.query.series.search(row["StudyInstanceUID"])
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        report = ds.helpers.reindex()
        stored = ds.store.dicom(make_study(StudySpec("local-thread-store", n_instances=2)))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert len(report.indexed) == 12 and stored.ok
    assert counts and all(2 <= c <= 6 for c in counts)
    assert len(ds.query.studies.search(ModalitiesInStudy="CT")) == 6


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors in /proc")
def test_short_lived_threads_leak_no_file_descriptors(ds: Any) -> None:
    ds.query.studies.search()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        thread = threading.Thread(target=ds.query.studies.search)
        thread.start()
        thread.join()
    assert len(os.listdir("/proc/self/fd")) <= before + 2


def test_host_cli_studies_series_metadata(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datasources.cli import main

    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {"dataSources": [{"namespace": NAMESPACE, "sourceName": "folder", "configuration": {"root": str(root)}}]}
        )
    )
    assert main(["studies", "-c", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert uids(rows) == [GARCIA.study_uid, DOE.study_uid, LEE.study_uid]
    assert main(["studies", "-c", str(config), "PatientName=lee*"]) == 0
    out = capsys.readouterr().out
    assert LEE.study_uid in out and GARCIA.study_uid not in out
    assert main(["series", LEE.study_uid, "-c", str(config), "--json"]) == 0
    assert uids(json.loads(capsys.readouterr().out), "SeriesInstanceUID") == [LEE.series_uid(0), LEE.series_uid(1)]
    assert main(["metadata", DOE.study_uid, "-c", str(config), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    instance = shown["series"][0]["instances"][0]
    assert instance["NumberOfFrames"] == 4 and instance["imageId"].startswith("dicomfile:")
    assert main(["metadata", "1.2.3", "-c", str(config)]) == 1
    assert "not in" in capsys.readouterr().err


def test_an_index_file_of_another_root_is_rebuilt(root: Path, tmp_path: Path) -> None:
    index = tmp_path / "shared.sqlite"
    first = host_for(root, cache=str(index)).get_data_source("local")
    assert len(first.query.studies.search()) == 3
    other_root = tmp_path / "other"
    write_datasets(make_study(StudySpec("local-other", "OTHER^ROOT", n_instances=1)), other_root)
    second = host_for(other_root, cache=str(index)).get_data_source("local")
    assert uids(second.query.studies.search()) == [
        make_study(StudySpec("local-other", n_instances=1))[0].StudyInstanceUID
    ]


def test_a_vanished_root_leaves_the_index_alone(ds: Any, root: Path) -> None:
    assert len(ds.query.studies.search()) == 3
    moved = root.with_name("moved")
    root.rename(moved)
    try:
        with pytest.raises(BackendError, match="cannot list the root folder"):
            ds.helpers.reindex()
        assert len(ds.query.studies.search()) == 3  # searches answer from the index
    finally:
        moved.rename(root)
    assert ds.helpers.reindex().read == []


def test_a_root_given_through_a_link(root: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-data"
    os.symlink(root, link)
    ds = host_for(link).get_data_source("local")
    assert len(ds.query.studies.search()) == 3
    path = files_of(GARCIA, root)[0]
    pixels = pydicom.dcmread(path).PixelData
    assert ds.retrieve.bulk_data_uri(f"dicomfile:{path}?tag=7FE00010") == pixels
    assert ds.retrieve.bulk_data_uri(f"dicomfile:{link / path.name}?tag=7FE00010") == pixels
    with pytest.raises(UnsafePathError):
        ds.retrieve.bulk_data_uri(f"dicomfile:{link}/lee/../{path.name}")


def test_an_unusable_cache_is_a_clear_error(root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    ds = host_for(root, cache=str(blocker / "cache")).get_data_source("local")
    with pytest.raises(BackendError, match="cannot create the index"):
        ds.query.studies.search()


def test_bulk_data_of_a_whole_file(ds: Any, root: Path) -> None:
    path = files_of(GARCIA, root)[0]
    assert ds.retrieve.bulk_data_uri(f"dicomfile:{path}") == path.read_bytes()
    assert ds.retrieve.bulk_data_uri({"BulkDataURI": f"file://{path}"}) == path.read_bytes()
    with pytest.raises(NotFoundError):
        ds.retrieve.bulk_data_uri(f"dicomfile:{root}/missing.dcm")
    assert io.BytesIO(ds.retrieve.bulk_data_uri(path.name)).read(132)[128:] == b"DICM"


def test_pydicom_sample_files_index_and_load(tmp_path: Path) -> None:
    """pydicom's own test files: big endian, implicit VR, deflated, no preamble, DICOMDIRs, junk."""
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("CT_small.dcm")).parent
    root = tmp_path / "pydicom-files"
    shutil.copytree(source, root)
    host = host_for(root)
    ds = host.get_data_source("local")
    studies = ds.query.studies.search()
    problems = ds.helpers.problems()
    assert len(studies) > 10 and problems
    assert {"README.txt"} <= {p["path"] for p in problems}
    assert any(p["path"].endswith("DICOMDIR") and "not an instance" in p["reason"] for p in problems)
    frames = 0
    for study in studies:
        ds.retrieve.series.metadata(study["StudyInstanceUID"])
        for series in host.metadata_store.get_study(study["StudyInstanceUID"])["series"]:
            for instance in series["instances"]:
                if isinstance(instance.get("PixelData"), dict):
                    count = int(instance.get("NumberOfFrames") or 1)
                    got = ds.retrieve.frames(
                        study["StudyInstanceUID"], series["SeriesInstanceUID"], instance["SOPInstanceUID"],
                        list(range(1, count + 1)),
                    )  # fmt: skip
                    assert len(got) == count and all(got)
                    frames += count
    assert frames > 20


def test_the_documented_example_runs(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs/sources/local.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", doc.split("## Runnable example", 1)[1], re.S)
    assert code is not None
    script = tmp_path / "local_example.py"
    script.write_text(code.group(1), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the example's mkdtemp() lands in tmp_path
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "first frame: 8192 bytes" in result.stdout
    assert "'path': 'notes.txt'" in result.stdout
