"""The dimse source against real DIMSE peers: Orthanc's DICOM port and dcmtk's dcmqrscp.

Searches are compared with the dicomweb source over the same Orthanc (same data, same
answers); metadata and frames with Orthanc's DICOMweb and with the files that were stored.
"""

from __future__ import annotations

import base64
import copy
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import pydicom
import pytest
from datasources import Host
from datasources.errors import ConfigurationError, InvalidQueryError, NotSupportedError
from support.dimse_fixtures import *  # noqa: F403
from support.dimse_fixtures import close_hosts, dimse_host

SEARCHES: list[dict[str, Any]] = [
    {},
    {"PatientName": "LEE^ANNA*"},
    {"PatientName": "lee*"},
    {"PatientName": "*NGOZI*"},
    {"PatientName": "garcia", "fuzzymatching": True},
    {"StudyDescription": "CT CHEST*"},
    {"StudyDescription": "*W/WO CONTRAST"},
    {"StudyDescription": "mr knee left"},
    {"StudyDate": "20190101-20201231"},
    {"StudyDate": "-20200105"},
    {"StudyDate": "20210930"},
    {"ModalitiesInStudy": "MR"},
    {"ModalitiesInStudy": ["CT", "MR"]},
    {"PatientID": "PAT0001", "ModalitiesInStudy": "CT"},
    {"AccessionNumber": "ACC2001\\ACC3001"},
    {"PatientSex": "M"},
    {"limit": 2},
    {"limit": 2, "offset": 2},
    {"offset": 3},
]


def can_decode(ts: str) -> bool:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    return UID(ts).is_encapsulated is False or get_decoder(UID(ts)).is_available


def dicomweb_host(url: str) -> Host:
    configuration = {"name": "web", "qidoRoot": url, "wadoRoot": url, "requestOptions": {"retries": 0}}
    entry = {"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "web", "configuration": configuration}
    return Host({"dataSources": [entry]})


def uids(records: list[dict[str, Any]], key: str = "StudyInstanceUID") -> list[str]:
    return sorted(str(r[key]) for r in records)


@pytest.fixture(scope="module")
def orthanc_source(orthanc_pacs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cache = tmp_path_factory.mktemp("dimse-cache")
    host = dimse_host(orthanc_pacs.server.source_config(cache={"folder": str(cache)}))
    host.initialize_data_source("pacs")
    yield host
    close_hosts([host])


@pytest.fixture(scope="module")
def web(orthanc_pacs: Any) -> Host:
    return dicomweb_host(orthanc_pacs.server.dicomweb_url)


@pytest.mark.parametrize("filters", SEARCHES, ids=[repr(f) for f in SEARCHES])
def test_study_search_equals_dicomweb_over_the_same_orthanc(orthanc_source: Host, web: Host, filters: dict) -> None:
    ours = orthanc_source.active_data_source.query.studies.search(dict(filters))
    theirs = web.active_data_source.query.studies.search(dict(filters))
    if "limit" in filters or "offset" in filters:
        whole = uids(web.active_data_source.query.studies.search())
        assert len(ours) == len(theirs)
        assert set(uids(ours)) <= set(whole)
    else:
        assert uids(ours) == uids(theirs)
        assert ours, "every search of the table matches something on this data set" if filters != {} else ""


def test_paging_walks_every_study_once(orthanc_source: Host) -> None:
    ds = orthanc_source.active_data_source
    everything = uids(ds.query.studies.search())
    pages = [ds.query.studies.search(limit=2, offset=offset) for offset in range(0, len(everything) + 2, 2)]
    walked = [uid for page in pages for uid in uids(page)]
    assert sorted(walked) == everything and len(walked) == len(set(walked))
    assert all(len(page) <= 2 for page in pages) and pages[-1] == []


def test_series_and_instance_search_equal_dicomweb(orthanc_source: Host, web: Host, orthanc_pacs: Any) -> None:
    ours, theirs = orthanc_source.active_data_source, web.active_data_source
    for study in orthanc_pacs.study_uids:
        assert uids(ours.query.series.search(study), "SeriesInstanceUID") == uids(
            theirs.query.series.search(study), "SeriesInstanceUID"
        )
        assert uids(ours.query.instances.search(study), "SOPInstanceUID") == uids(
            theirs.query.instances.search(study), "SOPInstanceUID"
        )
    lee_ct = orthanc_pacs.study_uids[0]
    first = ours.query.series.search(lee_ct, SeriesNumber="1")
    assert [s["SeriesNumber"] for s in first] == [1]
    assert ours.query.series.search(lee_ct, Modality="ct") == ours.query.series.search(lee_ct, Modality="CT")


def test_bad_filters_are_typed_errors_before_any_network(orthanc_source: Host) -> None:
    with pytest.raises(InvalidQueryError, match="patientname"):
        orthanc_source.active_data_source.query.studies.search(patientname="LEE*")
    with pytest.raises(InvalidQueryError, match="StudyInstanceUID"):
        orthanc_source.active_data_source.query.series.search("")


def _orthanc_frame(orthanc_pacs: Any, ds: Any) -> bytes:
    """Frame 1 as Orthanc's WADO-RS gives it, in the stored transfer syntax."""
    from datasources.multipart import parse

    server = orthanc_pacs.server
    url = (
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )
    accept = "multipart/related; type=application/octet-stream; transfer-syntax=*"
    answer = server.session.get(url, headers={"Accept": accept})
    assert answer.status_code == 200, answer.text[:200]
    return bytes(parse(answer.content, answer.headers["Content-Type"])[0].content)


def test_metadata_and_frames_of_compressed_files_are_as_stored(orthanc_source: Host, orthanc_pacs: Any) -> None:
    ds = orthanc_source.active_data_source
    study = str(orthanc_pacs.compressed[0].StudyInstanceUID)
    ds.retrieve.series.metadata(study)
    stored = orthanc_source.metadata_store.get_study(study)
    instances = {i["SOPInstanceUID"]: i for s in stored["series"] for i in s["instances"]}
    assert set(instances) == {str(c.SOPInstanceUID) for c in orthanc_pacs.compressed}
    from pydicom.encaps import generate_frames

    for original in orthanc_pacs.compressed:
        sop = str(original.SOPInstanceUID)
        meta = instances[sop]
        assert meta["PixelData"]["BulkDataURI"].startswith("dimse:")
        assert meta["Rows"] == original.Rows and meta["PatientName"] == {"Alphabetic": "PIXEL^TEST"}
        frame = ds.retrieve.frames(study, str(original.SeriesInstanceUID), sop, [1])[0]
        ts = str(original.file_meta.TransferSyntaxUID)
        if original.file_meta.TransferSyntaxUID.is_encapsulated:
            count = int(original.get("NumberOfFrames") or 1)
            expected = next(generate_frames(original.PixelData, number_of_frames=count))
            assert bytes(frame) == expected, original.SeriesDescription  # the PACS's bytes, untouched
            assert frame.transfer_syntax == ts
        else:
            assert frame.transfer_syntax == "1.2.840.10008.1.2.1"
        cached = pydicom.dcmread(ds.helpers.path_for_image_id(meta["imageId"]))
        assert cached.PixelData == original.PixelData
        if can_decode(ts):  # decoded pixels equal pydicom's decoding of the original file
            assert numpy.array_equal(cached.pixel_array, original.pixel_array)


def test_frames_are_byte_exact_with_orthanc_dicomweb(orthanc_source: Host, orthanc_pacs: Any) -> None:
    ds = orthanc_source.active_data_source
    multiframe = next(d for d in orthanc_pacs.datasets if int(d.get("NumberOfFrames") or 1) > 1)
    for original in [multiframe, *orthanc_pacs.compressed[:3]]:
        ours = ds.retrieve.frames(
            str(original.StudyInstanceUID), str(original.SeriesInstanceUID), str(original.SOPInstanceUID), [1]
        )[0]
        assert bytes(ours) == _orthanc_frame(orthanc_pacs, original)
    frames = ds.retrieve.frames(
        str(multiframe.StudyInstanceUID), str(multiframe.SeriesInstanceUID), str(multiframe.SOPInstanceUID), [1, 4]
    )
    size = multiframe.Rows * multiframe.Columns * 2
    assert [bytes(f) for f in frames] == [multiframe.PixelData[:size], multiframe.PixelData[3 * size : 4 * size]]


def test_metadata_equals_orthanc_dicomweb(orthanc_source: Host, web: Host, orthanc_pacs: Any) -> None:
    study = orthanc_pacs.study_uids[0]
    orthanc_source.active_data_source.retrieve.series.metadata(study)
    web.active_data_source.retrieve.series.metadata(study)
    ours = orthanc_source.metadata_store.get_study(study)
    theirs = web.metadata_store.get_study(study)
    by_sop = {i["SOPInstanceUID"]: i for s in theirs["series"] for i in s["instances"]}
    checked = 0
    for series in ours["series"]:
        for inst in series["instances"]:
            other = by_sop[inst["SOPInstanceUID"]]
            for key in ("PatientName", "StudyDate", "Modality", "Rows", "Columns", "ImagePositionPatient", "00291010"):
                assert inst.get(key) == other.get(key), key
            assert "BulkDataURI" in inst["PixelData"]
            pixels = orthanc_source.active_data_source.retrieve.bulk_data_uri(inst["PixelData"]["BulkDataURI"])
            original = orthanc_pacs.by_sop()[inst["SOPInstanceUID"]]
            assert bytes(pixels) == original.PixelData
            private = inst["00291011"]  # 512 bytes: inline, under the 1 KiB bulk data threshold
            assert base64.b64decode(private["InlineBinary"]) == original[0x00291011].value
            checked += 1
    assert checked == 6


def test_lazy_series_tasks(orthanc_pacs: Any, tmp_path: Any) -> None:
    host = dimse_host(orthanc_pacs.server.source_config(cache={"folder": str(tmp_path)}, enableStudyLazyLoad=True))
    study = orthanc_pacs.study_uids[0]
    tasks = host.active_data_source.retrieve.series.metadata(study, return_tasks=True)
    assert len(tasks) == 2 and not any(t.started for t in tasks)
    stored = host.metadata_store.get_study(study)
    assert len(stored["series"]) == 2 and all(not s.get("instances") for s in stored["series"])
    instances = tasks[1].result(timeout=30)
    assert len(instances) == 3 and not tasks[0].started


def test_cmove_to_the_sources_own_scp(orthanc_pacs: Any, tmp_path: Any) -> None:
    server = orthanc_pacs.server
    config = server.source_config(
        cache={"folder": str(tmp_path)}, retrieve="cmove", moveDestination=server.source_ae,
        storagePort=server.storage_port, storageHost="127.0.0.1",
    )  # fmt: skip
    host = dimse_host(config)
    study = orthanc_pacs.compressed[0].StudyInstanceUID
    host.active_data_source.retrieve.series.metadata(str(study))
    instances = [i for s in host.metadata_store.get_study(str(study))["series"] for i in s["instances"]]
    assert len(instances) == len(orthanc_pacs.compressed)
    for original in orthanc_pacs.compressed:
        path = host.active_data_source.helpers.path_for_image_id(
            f"dimse:{original.StudyInstanceUID}/{original.SeriesInstanceUID}/{original.SOPInstanceUID}"
        )
        received = pydicom.dcmread(path)
        ts = str(original.file_meta.TransferSyntaxUID)
        assert received.file_meta.TransferSyntaxUID in (ts, "1.2.840.10008.1.2.1")
        if received.file_meta.TransferSyntaxUID == ts:
            assert received.PixelData == original.PixelData
        if can_decode(ts):
            assert numpy.array_equal(received.pixel_array, original.pixel_array)


def test_store_dicom_reports_each_instance(orthanc_pacs: Any, tmp_path: Any) -> None:
    from support.dicomgen import StudySpec, make_study

    host = dimse_host(orthanc_pacs.server.source_config(cache={"folder": str(tmp_path)}))
    new = make_study(StudySpec("dimse-store", patient_name="STORE^ME", patient_id="PAT7777", n_instances=2))
    odd = copy.deepcopy(new[0])
    odd.SOPClassUID = "1.2.826.0.1.3680043.9.9999.1"  # a SOP class nobody accepts
    odd.SOPInstanceUID = pydicom.uid.generate_uid(prefix="2.25.")
    result = host.active_data_source.store.dicom([new[0], new[1], odd, b"not dicom"])
    statuses = [o.status for o in result.outcomes]
    assert statuses == ["stored", "stored", "failed", "failed"], [o.reason for o in result.outcomes]
    assert "presentation context" in result.outcomes[2].reason
    found = host.active_data_source.query.studies.search(PatientID="PAT7777")
    assert uids(found) == [str(new[0].StudyInstanceUID)]


def test_a_cache_file_gone_bad_is_retrieved_again_and_typed_when_read(orthanc_pacs: Any, tmp_path: Any) -> None:
    """The cache's copy overwritten or truncated: the frames come from the PACS again, whole; the
    reader itself names the bad file with a ``CorruptFileError`` (a 502 at the gateway)."""
    from datasources.errors import CorruptFileError
    from datasources_default.dimse.frames import read_labelled_frames

    host = dimse_host(orthanc_pacs.server.source_config(cache={"folder": str(tmp_path)}))
    ds = host.active_data_source
    original = orthanc_pacs.datasets[0]
    uids = (str(original.StudyInstanceUID), str(original.SeriesInstanceUID), str(original.SOPInstanceUID))
    first = ds.retrieve.frames(*uids, [1])
    path = ds.helpers.path_for_image_id("dimse:" + "/".join(uids))
    whole = Path(path).read_bytes()
    for damage in (whole[: len(whole) - 100], b"\x00" * 128 + b"DICM" + os.urandom(400)):
        Path(path).write_bytes(damage)
        with pytest.raises(CorruptFileError, match=f"dimse cache: {uids[2]}.dcm"):
            read_labelled_frames(path, [1])
        assert ds.retrieve.frames(*uids, [1]) == first  # retrieved again from the PACS
        assert Path(path).read_bytes() == whole  # and the cache holds the whole file again


def test_reject_is_not_supported_and_config_has_no_surprises(orthanc_source: Host) -> None:
    ds = orthanc_source.active_data_source
    with pytest.raises(NotSupportedError, match="reject"):
        ds.reject.series("1.2.3", "1.2.3.4")
    config = ds.get_config()
    assert config["retrieve"] == "cget" and config["calledAETitle"] == "ORTHANC"
    assert ds.helpers.health()["ok"] is True


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"port": 104}, "host"),
        ({"host": "pacs", "port": 0, "calledAETitle": "X"}, "port"),
        ({"host": "pacs", "port": "104", "calledAETitle": "X"}, "port must be a whole number"),
        ({"host": "pacs", "port": 104, "calledAETitle": "A" * 17}, "calledAETitle"),
        ({"host": "pacs", "port": 104, "calledAETitle": "X", "retrieve": "wado"}, "retrieve"),
        ({"host": "pacs", "port": 104, "calledAETitle": "X", "retrieve": "cmove"}, "moveDestination"),
        ({"host": "pacs", "port": 104, "calledAETitle": "X", "maxAssociations": 0}, "maxAssociations"),
        ({"host": "pacs", "port": 104, "calledAETitle": "X", "timeouts": {"dimse": -1}}, "timeouts.dimse"),
        ({"host": "pacs", "port": 104, "calledAETitle": "X", "timeouts": {"read": 1}}, "timeouts.read"),
        ({"host": "pacs", "port": 104, "calledAETitle": "X", "tls": {"key": "k.pem"}}, "tls.key"),
        ({"host": "pacs", "port": 104, "calledAETitle": "X", "cache": {"maxBytes": 0}}, "cache.maxBytes"),
    ],
)
def test_configuration_is_checked(bad: dict, message: str) -> None:
    from datasources_default.dimse import create_dimse_api

    with pytest.raises(ConfigurationError, match=message):
        create_dimse_api(bad)


def test_unknown_key_warns() -> None:
    from datasources_default.dimse import create_dimse_api

    with pytest.warns(UserWarning, match="calledAet"):
        create_dimse_api({"host": "pacs", "port": 104, "calledAETitle": "X", "calledAet": "Y"})


# -- dcmqrscp: the second, stricter peer --------------------------------------------------------


@pytest.fixture(scope="module")
def dcmqrscp_source(dcmqrscp_pacs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    cache = tmp_path_factory.mktemp("dimse-cache-dcmqrscp")
    host = dimse_host(dcmqrscp_pacs.server.source_config(cache={"folder": str(cache)}))
    host.initialize_data_source("pacs")
    yield host
    close_hosts([host])


@pytest.mark.parametrize("filters", SEARCHES, ids=[repr(f) for f in SEARCHES])
def test_dcmqrscp_answers_as_orthanc_does(dcmqrscp_source: Host, orthanc_source: Host, filters: dict) -> None:
    # Orthanc also holds the compressed study; it is left out by the patient filter below
    extra = {} if any(k in filters for k in ("limit", "offset")) else {"PatientID": "PAT000*"}
    if "PatientID" in filters:
        extra = {}
    ours = dcmqrscp_source.active_data_source.query.studies.search({**filters, **extra})
    theirs = orthanc_source.active_data_source.query.studies.search({**filters, **extra})
    if extra or not any(k in filters for k in ("limit", "offset")):
        assert uids(ours) == uids(theirs)
    else:
        assert len(ours) == min(len(theirs), len(ours)) and len(ours) <= (filters.get("limit") or 99)


def test_dcmqrscp_metadata_and_frames(dcmqrscp_source: Host, dcmqrscp_pacs: Any) -> None:
    ds = dcmqrscp_source.active_data_source
    for study in dcmqrscp_pacs.study_uids:
        ds.retrieve.series.metadata(study)
        stored = dcmqrscp_source.metadata_store.get_study(study)
        sops = {i["SOPInstanceUID"] for s in stored["series"] for i in s["instances"]}
        originals = [d for d in dcmqrscp_pacs.datasets if d.StudyInstanceUID == study]
        assert sops == {str(d.SOPInstanceUID) for d in originals}
        for original in originals:
            frame = ds.retrieve.frames(study, str(original.SeriesInstanceUID), str(original.SOPInstanceUID), [1])[0]
            size = original.Rows * original.Columns * 2
            assert bytes(frame) == original.PixelData[:size]


def test_bulk_data_and_image_ids(orthanc_source: Host, orthanc_pacs: Any) -> None:
    ds = orthanc_source.active_data_source
    original = orthanc_pacs.compressed[1]
    study, series, sop = str(original.StudyInstanceUID), str(original.SeriesInstanceUID), str(original.SOPInstanceUID)
    ds.retrieve.series.metadata(study)
    inst = orthanc_source.metadata_store.get_series(study, series)["instances"][0]
    assert ds.get_image_ids_for_instance(inst) == f"dimse:{study}/{series}/{sop}"
    pixel = ds.retrieve.bulk_data_uri(inst["PixelData"]["BulkDataURI"])
    assert bytes(pixel) == original.PixelData and pixel.transfer_syntax == str(original.file_meta.TransferSyntaxUID)
    part10 = ds.retrieve.bulk_data_uri(f"dimse:{study}/{series}/{sop}")
    assert pydicom.dcmread(io.BytesIO(part10)).SOPInstanceUID == sop
    with pytest.raises(InvalidQueryError):
        ds.retrieve.bulk_data_uri("dicomfile:/etc/passwd")
