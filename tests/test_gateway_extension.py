"""A non-DICOM source from an in-process extension, served as DICOMweb; and sources that fail.

The extension maps a small table of "scans" (no DICOM anywhere) into naturalized metadata and
makes its frames from the table, through ``retrieve.frames``: exactly what an extension such
as imagefolder does. The gateway must serve it like any PACS, to dicomweb-client too.
"""

from __future__ import annotations

import io
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

import pytest

pytest.importorskip("starlette")

from datasources import Host, hookimpl
from datasources.errors import BackendTimeoutError, NotFoundError
from datasources.gateway import create_app
from datasources.interface import IWebApiDataSource, not_supported
from datasources.matching import filter_records
from datasources.query import parse_search
from support.dicomgen import StudySpec, dataset_to_bytes, make_study
from test_gateway_support import served

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SCANS = [  # patient, date, modality, description, rows, columns, frames
    ("ROE^JANE", "20240102", "OT", "HAND XRAY", 6, 4, 1),
    ("ROE^JANE", "20240301", "OT", "HAND XRAY FOLLOW-UP", 6, 4, 3),
    ("POE^EDGAR", "20230715", "OT", "FOOT XRAY", 5, 5, 1),
]


def uid(*parts: object) -> str:
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(map(str, parts))).int}"


def pixels(index: int, frame: int) -> bytes:
    _, _, _, _, rows, columns, _ = SCANS[index]
    return bytes((index * 50 + frame * 20 + i * 7) % 256 for i in range(rows * columns))


def create_table_api(configuration: Mapping[str, Any], host: Any = None) -> Any:
    failing = configuration.get("fail")

    def study_record(i: int) -> dict[str, Any]:
        patient, date, modality, description, *_ = SCANS[i]
        return {"StudyInstanceUID": uid("study", i), "PatientName": {"Alphabetic": patient},
                "PatientID": patient.split("^")[0], "StudyDate": date, "StudyDescription": description,
                "ModalitiesInStudy": [modality], "NumberOfStudyRelatedSeries": 1,
                "NumberOfStudyRelatedInstances": 1}  # fmt: skip

    def index_of(study: str) -> int:
        for i in range(len(SCANS)):
            if uid("study", i) == study:
                return i
        raise NotFoundError(f"no scan {study}")

    def instance(i: int) -> dict[str, Any]:
        _, _, modality, _, rows, columns, frames = SCANS[i]
        return {**study_record(i), "SeriesInstanceUID": uid("series", i), "SOPInstanceUID": uid("sop", i),
                "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7", "Modality": modality, "SeriesNumber": 1,
                "InstanceNumber": 1, "Rows": rows, "Columns": columns, "NumberOfFrames": frames,
                "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2", "BitsAllocated": 8,
                "BitsStored": 8, "HighBit": 7, "PixelRepresentation": 0}  # fmt: skip

    def search_studies(filters: Any = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        if failing == "search":
            raise RuntimeError("a bug in the extension, with a secret-looking detail")
        q = parse_search("study", filters, **kwargs)
        return filter_records([study_record(i) for i in range(len(SCANS))], q)

    def search_series(study: str, filters: Any = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        q = parse_search("series", filters, **kwargs)
        inst = instance(index_of(study))
        keys = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber")
        return filter_records([{k: inst[k] for k in keys} | {"NumberOfSeriesRelatedInstances": 1}], q)

    def search_instances(study: str, series: Any = None, filters: Any = None, /, **kwargs: Any) -> list[dict]:
        q = parse_search("instance", filters, **kwargs)
        return filter_records([instance(index_of(study))], q)

    def series_metadata(study: str, *, series_instance_uids: Any = None, made_in_client: bool = False) -> dict:
        if failing == "metadata":
            raise BackendTimeoutError("the table server did not answer")
        inst = instance(index_of(study))
        store = host.metadata_store
        store.add_study({k: v for k, v in inst.items() if k.startswith(("Study", "Patient"))})
        summary = {k: inst[k] for k in ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber")}
        store.add_series_metadata([summary])
        store.add_instances([inst])
        return {inst["SeriesInstanceUID"]: summary}

    def frames(study: str, series: str, sop: str, numbers: list[int]) -> list[bytes]:
        i = index_of(study)
        if sop != uid("sop", i) or any(n > SCANS[i][6] for n in numbers):
            raise NotFoundError("no such frame")
        return [pixels(i, n) for n in numbers]

    return IWebApiDataSource.create(
        initialize=lambda params=None, query=None: None,
        query={"studies": {"search": search_studies}, "series": {"search": search_series},
               "instances": {"search": search_instances}},
        retrieve={"series": {"metadata": series_metadata}, "frames": frames,
                  "direct_url": not_supported("retrieve.direct_url"),
                  "bulk_data_uri": not_supported("retrieve.bulk_data_uri")},
        store={"dicom": not_supported("store.dicom", "the table is read-only")},
        reject={"series": not_supported("reject.series")},
        get_image_ids_for_display_set=lambda display_set: [],
        get_image_ids_for_instance=lambda instance, frame=None: "",
        get_config=lambda: {},
        get_study_instance_uids=lambda params=None, query=None: [],
        delete_study_metadata=lambda study: host.metadata_store.remove_study(study),
    )  # fmt: skip


class TableExtension:
    @hookimpl
    def getDataSourcesModule(self) -> list[dict[str, Any]]:
        return [{"name": "table", "type": "other", "createDataSource": create_table_api}]


def host(**configuration: Any) -> Host:
    return Host(
        {"dataSources": [{"namespace": "tables.dataSourcesModule.table", "sourceName": "scans",
                          "configuration": configuration}]},
        extensions={"tables": TableExtension()},
    )  # fmt: skip


def test_a_non_dicom_source_is_served_as_dicomweb() -> None:
    client = TestClient(create_app(host()))
    rows = client.get("/scans/dicom-web/studies?PatientName=ROE*").json()
    assert [r["00081030"]["Value"][0] for r in rows] == ["HAND XRAY", "HAND XRAY FOLLOW-UP"]
    study, series, sop = uid("study", 1), uid("series", 1), uid("sop", 1)
    (metadata,) = client.get(f"/scans/dicom-web/studies/{study}/metadata").json()
    assert metadata["00280010"] == {"vr": "US", "Value": [6]} and metadata["00280008"] == {"vr": "IS", "Value": [3]}
    assert metadata["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "ROE^JANE"}]}
    base = f"/scans/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    response = client.get(f"{base}/frames/1,3")
    from datasources import multipart

    parts = multipart.parse(response.content, response.headers["content-type"])
    assert [p.content for p in parts] == [pixels(1, 1), pixels(1, 3)]
    assert parts[0].content_type == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert client.get(f"{base}/frames/4").status_code == 404
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(client.get(f"{base}/frames/2/rendered").content)))
    expected = np.frombuffer(pixels(1, 2), dtype="u1").reshape(6, 4).astype(float)
    stretched = (expected - expected.min()) / (expected.max() - expected.min()) * 255  # no window: its own range
    assert image.shape == (6, 4) and np.abs(image - stretched).max() <= 1
    assert client.get(f"/scans/dicom-web/studies/{study}/series/{series}/thumbnail").status_code == 200
    (dataset,) = make_study(StudySpec("gw-table-stow", n_instances=1))
    body, boundary = multipart.build([(dataset_to_bytes(dataset), "application/dicom")])
    stow = client.post(
        "/scans/dicom-web/studies",
        content=body,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
    )
    assert stow.status_code == 405 and "read-only" in stow.json()["error"]


def test_dicomweb_client_reads_the_non_dicom_source() -> None:
    dicomweb_client = pytest.importorskip("dicomweb_client")
    with served(create_app(host())) as server:
        client = dicomweb_client.DICOMwebClient(f"{server.url}/scans/dicom-web")
        studies = client.search_for_studies(search_filters={"StudyDate": "20240101-"})
        assert len(studies) == 2
        study, series, sop = uid("study", 2), uid("series", 2), uid("sop", 2)
        assert client.retrieve_instance_frames(study, series, sop, [1]) == [pixels(2, 1)]
        (metadata,) = client.retrieve_series_metadata(study, series)
        assert metadata["00080018"]["Value"] == [sop]


def test_failing_sources_get_statuses_not_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    buggy = TestClient(create_app(host(fail="search")), raise_server_exceptions=False)
    with caplog.at_level("ERROR", logger="datasources.gateway"):
        response = buggy.get("/dicom-web/studies")
    assert response.status_code == 500 and response.json() == {
        "error": "internal error: RuntimeError",
        "type": "InternalError",
        "status": 500,
    }
    assert "secret-looking" in caplog.text  # the operator sees it; the client does not
    slow = TestClient(create_app(host(fail="metadata")))
    response = slow.get(f"/dicom-web/studies/{uid('study', 0)}/metadata")
    assert response.status_code == 504 and response.json()["type"] == "BackendTimeoutError"
