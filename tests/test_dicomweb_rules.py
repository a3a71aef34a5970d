"""The dicomweb source's rules, table by table: BulkDataURI resolution, image ids, QIDO encoding, reject."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from datasources import Host
from datasources.query import parse_search
from datasources_default.dicomweb.bulkdata import fix_bulk_data_uri, image_id
from datasources_default.dicomweb.config import DicomWebConfig
from datasources_default.dicomweb.qido import plan_query
from support.faultserver import FaultServer, Reply

ROOT = "https://pacs.example/dicom-web"


def config(**extra: Any) -> DicomWebConfig:
    return DicomWebConfig.from_mapping({"wadoRoot": ROOT, **extra})


@pytest.mark.parametrize(
    ("uri", "bulk", "expected"),
    [
        ("https://other/x", {}, "https://other/x"),  # absolute: as it is
        ("/dicom-web/studies/1/bulk/x", {}, "https://pacs.example/dicom-web/studies/1/bulk/x"),  # server-relative
        ("series/2/instances/3/bulk", {}, f"{ROOT}/studies/1/series/2/instances/3/bulk"),
        ("bulkdata/abc.raw", {}, f"{ROOT}/studies/1/bulkdata/abc.raw"),
        ("instances/3/bulk", {}, f"{ROOT}/studies/1/series/2/instances/3/bulk"),
        ("../2/instances/3", {}, f"{ROOT}/studies/1/series/2/../2/instances/3"),
        ("x.raw", {}, f"{ROOT}/studies/1/series/2/x.raw"),  # unset resolution: the series
        ("x.raw", {"relativeResolution": "studies"}, f"{ROOT}/studies/1/x.raw"),
        ("instances/3/x", {"relativeResolution": "studies"}, f"{ROOT}/studies/1/series/2/instances/3/x"),
        ("x.raw", {"relativeResolution": "series"}, f"{ROOT}/studies/1/series/2/x.raw"),
        (  # behind a reverse proxy the server reports its inside address
            "http://orthanc:8042/dicom-web/studies/1/bulk",
            {"startsWith": "http://orthanc:8042/", "prefixWith": "https://pacs.example/"},
            "https://pacs.example/dicom-web/studies/1/bulk",
        ),
        ("/inner/x", {"startsWith": "/inner/", "prefixWith": "bulkdata/"}, f"{ROOT}/studies/1/bulkdata/x"),
    ],
)
def test_bulk_data_uri_resolution(uri: str, bulk: dict[str, Any], expected: str) -> None:
    assert fix_bulk_data_uri(uri, "1", "2", config(bulkDataURI={"enabled": True, **bulk})) == expected


def test_bulk_data_transform_runs_first() -> None:
    conf = config(bulkDataURI={"transform": lambda u: u.replace("/pixeldata.mp4", "/rendered")})
    assert fix_bulk_data_uri("series/2/pixeldata.mp4", "1", "2", conf) == f"{ROOT}/studies/1/series/2/rendered"


def test_image_ids_in_both_forms() -> None:
    inst = {"StudyInstanceUID": "1", "SeriesInstanceUID": "2", "SOPInstanceUID": "3"}
    assert image_id(inst, config()) == f"wadors:{ROOT}/studies/1/series/2/instances/3/frames/1"
    assert image_id(inst, config(), 4).endswith("/frames/4")
    uri = config(imageRendering="wadouri", wadoUriRoot="https://pacs.example/wado")
    assert image_id(inst, uri) == (
        "dicomweb:https://pacs.example/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3"
        "&contentType=application/dicom&transferSyntax=*"
    )
    assert image_id(inst, uri, 2).endswith("&frame=2")


@pytest.mark.parametrize(
    ("filters", "options", "query_string", "client_side"),
    [
        ({"PatientName": "LEE*"}, {}, "PatientName=LEE*", False),  # * travels raw: Orthanc does not decode
        ({"PatientName": "LEE^ANNA^K"}, {}, "PatientName=LEE?ANNA?K", True),  # ^ cannot: widened, then exact
        ({"StudyDescription": "CT CHEST"}, {}, "StudyDescription=CT?CHEST", True),
        ({"PatientName": "MÜLLER*"}, {}, "PatientName=M*LLER*", True),
        ({"ModalitiesInStudy": "CT\\MR"}, {}, "ModalitiesInStudy=CT,MR", False),  # backslash list as commas
        ({"AccessionNumber": "A&B"}, {}, "AccessionNumber=A%26B", False),
        ({"PatientName": "LEE*"}, {"supports_wildcard": False}, "", True),  # no wildcards: filtered here
        ({"PatientName": "LEE^ANNA^K"}, {"encoding": "percent"}, "PatientName=LEE%5EANNA%5EK", False),
        ({"PatientName": "LEE*", "limit": 5, "offset": 10}, {}, "PatientName=LEE*&limit=5&offset=10", False),
        ({"PatientName": "LEE ANNA", "limit": 5}, {}, "PatientName=LEE?ANNA", True),  # paged here, not there
        ({"includefield": "StudyDescription"}, {}, "includefield=StudyDescription", False),
        ({"includefield": "StudyDescription"}, {"supports_include_field": False}, "", False),
        ({"PatientName": "ann", "fuzzymatching": True}, {}, "", True),  # fuzzy not supported: done here
        (
            {"PatientName": "ann", "fuzzymatching": True},
            {"supports_fuzzy": True},
            "PatientName=ann&fuzzymatching=true",
            False,
        ),
        ({"PatientName": "LEE*"}, {"static": True}, "", True),
    ],
)
def test_qido_plan(filters: dict[str, Any], options: dict[str, Any], query_string: str, client_side: bool) -> None:
    plan = plan_query(parse_search("study", filters), **options)
    assert plan.query_string == query_string
    assert plan.client_filter is client_side


def test_reject_where_supported(fault_server: FaultServer) -> None:
    path = "/dicom-web/studies/1/series/2/reject/113039%5EDCM"
    fault_server.script(path, Reply(204))
    host = Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "d",
                          "configuration": {"wadoRoot": f"{fault_server.url}/dicom-web", "supportsReject": True}}]}
    )  # fmt: skip
    host.get_data_source("d").reject.series("1", "2")
    assert [r.method for r in fault_server.requests_to(path)] == ["POST"]


def test_get_config_masks_every_secret() -> None:
    conf = config(
        requestOptions={"auth": "u:p4ss", "headers": {"Authorization": "Bearer t0k", "X-Trace": "ok"}},
        bulkDataURI={"enabled": True, "transform": lambda u: u},
    )
    public = conf.public()
    text = orjson.dumps(public).decode()
    assert "p4ss" not in text and "t0k" not in text and "X-Trace" in text
    assert "transform" not in public["bulkDataURI"]
    assert "p4ss" not in repr(conf)
