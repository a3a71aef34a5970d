"""The dicomjson source over the bundled sample and hand-written documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import SAMPLE_JSON
from datasources import Host
from datasources.errors import (
    ConfigurationError,
    InvalidQueryError,
    MalformedResponseError,
    NotFoundError,
    NotSupportedError,
    UnsafePathError,
)


def host_for(path: Path) -> Host:
    return Host.from_config(
        {
            "dataSources": [
                {
                    "namespace": "default.dataSourcesModule.dicomjson",
                    "sourceName": "j",
                    "configuration": {"path": str(path)},
                }
            ]
        }
    )


def uids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["StudyInstanceUID"] for r in rows}


def expected(document: dict[str, Any], predicate: Any) -> set[str]:
    return {s["StudyInstanceUID"] for s in document["studies"] if predicate(s)}


def name_of(study: dict[str, Any]) -> str:
    pn = study["PatientName"]
    return pn["Alphabetic"] if isinstance(pn, dict) else pn


@pytest.mark.parametrize(
    ("filters", "predicate"),
    [
        ({}, lambda s: True),
        ({"PatientName": "LEE*"}, lambda s: name_of(s).startswith("LEE")),
        ({"PatientName": "lee*"}, lambda s: name_of(s).startswith("LEE")),  # PN is case-insensitive
        ({"PatientName": "*ANNA*"}, lambda s: "ANNA" in name_of(s)),
        ({"PatientName": "G?RCIA*"}, lambda s: name_of(s).startswith("GARCIA")),
        ({"PatientID": "PAT0004"}, lambda s: s["PatientID"] == "PAT0004"),
        ({"StudyDate": "20200101-20221231"}, lambda s: "20200101" <= s["StudyDate"] <= "20221231"),
        ({"StudyDate": "20230101-"}, lambda s: s["StudyDate"] >= "20230101"),
        ({"StudyDate": "-20191231"}, lambda s: s["StudyDate"] <= "20191231"),
        ({"StudyDate": "20200105"}, lambda s: s["StudyDate"] == "20200105"),
        ({"ModalitiesInStudy": "MR"}, lambda s: s["Modalities"] == "MR"),
        ({"ModalitiesInStudy": "CT\\MR"}, lambda s: True),
        ({"StudyDescription": "CT*"}, lambda s: s["StudyDescription"].startswith("CT")),
        ({"AccessionNumber": "ACC100?"}, lambda s: s["AccessionNumber"].startswith("ACC100")),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else "",
)
def test_study_search_semantics(sample_document: dict[str, Any], filters: dict[str, str], predicate: Any) -> None:
    ds = Host().get_data_source("sample")
    want = expected(sample_document, predicate)
    assert want or filters == {}  # each case must select something to be meaningful
    assert uids(ds.query.studies.search(**filters)) == want


def test_uid_list_and_paging(sample_document: dict[str, Any]) -> None:
    ds = Host().get_data_source("sample")
    all_uids = [s["StudyInstanceUID"] for s in sample_document["studies"]]
    two = "\\".join(all_uids[:2])
    assert uids(ds.query.studies.search(StudyInstanceUID=two)) == set(all_uids[:2])
    page1 = ds.query.studies.search(limit=4)
    page2 = ds.query.studies.search(limit=4, offset=4)
    assert len(page1) == 4 and len(page2) == 2
    assert uids(page1) | uids(page2) == set(all_uids)
    mr = ds.query.studies.search(ModalitiesInStudy="MR", limit=1, offset=1)
    assert len(mr) == 1 and mr[0]["ModalitiesInStudy"] == ["MR"]


def test_unknown_or_miscased_keyword_is_an_error() -> None:
    ds = Host().get_data_source("sample")
    with pytest.raises(InvalidQueryError, match="PatientName"):
        ds.query.studies.search(patientname="LEE*")
    with pytest.raises(InvalidQueryError):
        ds.query.studies.search(NoSuchKeyword="x")


def test_series_and_instances(sample_document: dict[str, Any]) -> None:
    ds = Host().get_data_source("sample")
    study = sample_document["studies"][0]
    series = ds.query.series.search(study["StudyInstanceUID"])
    assert [s["SeriesInstanceUID"] for s in series] == [s["SeriesInstanceUID"] for s in study["series"]]
    assert series[0]["NumberOfSeriesRelatedInstances"] == len(study["series"][0]["instances"])
    lung = ds.query.series.search(study["StudyInstanceUID"], SeriesDescription="*LUNG*")
    assert [s["SeriesDescription"] for s in lung] == ["AXIAL 1.25MM LUNG"]
    first = study["series"][0]
    inst = ds.query.instances.search(study["StudyInstanceUID"], first["SeriesInstanceUID"], InstanceNumber="2")
    assert [i["SOPInstanceUID"] for i in inst] == [first["instances"][1]["metadata"]["SOPInstanceUID"]]
    with pytest.raises(NotFoundError):
        ds.query.series.search("9.9.9")


def test_metadata_fills_the_store_with_events(sample_document: dict[str, Any]) -> None:
    host = Host()
    ds = host.get_data_source("sample")
    store = host.metadata_store
    events: list[tuple[str, Any]] = []
    for name in ("SERIES_ADDED", "INSTANCES_ADDED", "STUDY_ADDED"):
        event = getattr(store.EVENTS, name)
        store.subscribe(event, lambda payload, name=name: events.append((name, payload)))
    study = sample_document["studies"][1]
    summaries = ds.retrieve.series.metadata(study["StudyInstanceUID"])
    assert set(summaries) == {s["SeriesInstanceUID"] for s in study["series"]}
    stored = store.get_study(study["StudyInstanceUID"])
    assert stored is not None
    assert [len(s["instances"]) for s in stored["series"]] == [len(s["instances"]) for s in study["series"]]
    inst = stored["series"][0]["instances"][0]
    src = study["series"][0]["instances"][0]
    assert inst["SOPInstanceUID"] == src["metadata"]["SOPInstanceUID"]
    assert inst["imageId"] == src["url"]
    assert inst["PatientID"] == study["PatientID"] and inst["Modality"] == "MR"
    assert store.get_instance_by_image_id(src["url"])["SOPInstanceUID"] == inst["SOPInstanceUID"]
    names = [n for n, _ in events]
    assert names.count("STUDY_ADDED") == 1
    assert names.count("SERIES_ADDED") == 1
    assert names.count("INSTANCES_ADDED") == len(study["series"])
    # delete_study_metadata forgets the study
    ds.delete_study_metadata(study["StudyInstanceUID"])
    assert store.get_study(study["StudyInstanceUID"]) is None


def test_bulk_data_is_read_from_the_bundled_files(sample_document: dict[str, Any]) -> None:
    ds = Host().get_data_source("sample")
    inst = sample_document["studies"][0]["series"][0]["instances"][0]
    data = ds.retrieve.bulk_data_uri(inst["metadata"]["PixelData"]["BulkDataURI"])
    path = SAMPLE_JSON.parent / inst["url"].removeprefix("dicomweb:")
    assert data == pydicom.dcmread(path).PixelData
    assert ds.retrieve.direct_url(inst["metadata"]).endswith(".dcm")


def test_image_ids(sample_document: dict[str, Any]) -> None:
    ds = Host().get_data_source("sample")
    series = sample_document["studies"][0]["series"][0]
    images = [dict(i["metadata"], url=i["url"]) for i in series["instances"]]
    assert ds.get_image_ids_for_display_set({"images": images}) == [i["url"] for i in series["instances"]]
    multi = dict(images[0], NumberOfFrames=3)
    assert ds.get_image_ids_for_display_set([multi]) == [f"{images[0]['url']}?frame={n}" for n in range(3)]
    assert ds.get_image_ids_for_instance(images[0], frame=2) == images[0]["url"] + "?frame=2"


def test_read_only_operations_are_not_supported() -> None:
    ds = Host().get_data_source("sample")
    with pytest.raises(NotSupportedError, match=r"store\.dicom is not supported by data source 'sample'"):
        ds.store.dicom(b"")
    with pytest.raises(NotSupportedError):
        ds.reject.series("1", "2")


def test_study_instance_uids_from_route(sample_document: dict[str, Any]) -> None:
    ds = Host().get_data_source("sample")
    assert ds.get_study_instance_uids(query={"StudyInstanceUIDs": "1.2,3.4"}) == ["1.2", "3.4"]
    assert len(ds.get_study_instance_uids()) == len(sample_document["studies"])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        host_for(tmp_path / "missing.json").get_data_source("j").query.studies.search()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MalformedResponseError, match="not valid JSON"):
        host_for(bad).get_data_source("j").query.studies.search()
    shapeless = tmp_path / "shapeless.json"
    shapeless.write_text(json.dumps({"studies": [{"series": []}]}))
    with pytest.raises(MalformedResponseError, match=r"studies\[0\] has no StudyInstanceUID"):
        host_for(shapeless).get_data_source("j").query.studies.search()


def test_relative_urls_cannot_escape_the_folder(tmp_path: Path) -> None:
    doc = tmp_path / "d.json"
    doc.write_text(json.dumps({"studies": [{"StudyInstanceUID": "1", "series": []}]}))
    ds = host_for(doc).get_data_source("j")
    with pytest.raises(UnsafePathError):
        ds.retrieve.bulk_data_uri("../../etc/passwd")


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="one of url, path or bundled"):
        Host.from_config(
            {
                "dataSources": [
                    {
                        "namespace": "default.dataSourcesModule.dicomjson",
                        "sourceName": "x",
                        "configuration": {"url": "http://a", "path": "/b"},
                    }
                ]
            }
        )
    host = Host.from_config(
        {
            "dataSources": [
                {
                    "namespace": "default.dataSourcesModule.dicomjson",
                    "sourceName": "x",
                    "configuration": {"bundled": "nope"},
                }
            ]
        }
    )
    with pytest.raises(ConfigurationError, match="no bundled DICOM JSON 'nope'; bundled: sample"):
        host.get_data_source("x").query.studies.search()


def test_over_http(tmp_path: Path) -> None:
    import http.server
    import threading
    from functools import partial

    (tmp_path / "s.json").write_bytes(SAMPLE_JSON.read_bytes())
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/s.json"
        host = Host.from_config(
            {
                "dataSources": [
                    {
                        "namespace": "default.dataSourcesModule.dicomjson",
                        "sourceName": "web",
                        "configuration": {"url": url},
                    }
                ]
            }
        )
        assert len(host.get_data_source("web").query.studies.search()) == 6
    finally:
        server.shutdown()
        server.server_close()
