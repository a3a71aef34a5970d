"""The dicomweb source against a real Orthanc: STOW, every search filter, metadata, frames, bulk data."""

from __future__ import annotations

from typing import Any

import pytest
from datasources import Host
from datasources.errors import ConfigurationError, NotFoundError, NotSupportedError
from datasources.naturalize import from_pydicom
from support.dicomgen import StudySpec, make_study
from support.orthanc_fixtures import DATASET_SPECS


def host_for(url: str, **configuration: Any) -> Host:
    entry = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",  # an OHIF entry, as it is
        "sourceName": "orthanc",
        "configuration": {
            "friendlyName": "Orthanc",
            "name": "orthanc",
            "wadoRoot": url,
            "qidoRoot": url,
            **configuration,
        },
    }
    return Host.from_config({"dataSources": [entry], "defaultDataSourceName": "orthanc"})


@pytest.fixture(scope="module")
def stowed(orthanc_empty: Any) -> dict[str, Any]:
    datasets = [ds for spec in DATASET_SPECS for ds in make_study(spec)]
    host = host_for(orthanc_empty.dicomweb_url)
    result = host.active_data_source.store.dicom(datasets, batch_size=4)
    return {"url": orthanc_empty.dicomweb_url, "datasets": datasets, "result": result, "server": orthanc_empty}


def study_uids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["StudyInstanceUID"] for r in rows}


def expected(predicate: Any) -> set[str]:
    return {s.study_uid for s in DATASET_SPECS if predicate(s)}


def test_stow_reports_every_instance(stowed: dict[str, Any]) -> None:
    result = stowed["result"]
    assert result.ok and len(result.stored) == len(stowed["datasets"])
    assert {o.sop_instance_uid for o in result.stored} == {d.SOPInstanceUID for d in stowed["datasets"]}
    assert all(o.retrieve_url and o.retrieve_url.startswith(stowed["url"]) for o in result.stored)


@pytest.mark.parametrize(
    ("filters", "predicate"),
    [
        ({}, lambda s: True),
        ({"PatientName": "LEE*"}, lambda s: s.patient_name.startswith("LEE")),
        ({"PatientName": "lee*"}, lambda s: s.patient_name.startswith("LEE")),
        ({"PatientName": "LEE^ANNA^K"}, lambda s: s.patient_name == "LEE^ANNA^K"),  # ^ cannot travel raw
        ({"PatientName": "*NGOZI*"}, lambda s: "NGOZI" in s.patient_name),
        ({"PatientID": "PAT0002"}, lambda s: s.patient_id == "PAT0002"),
        ({"StudyDescription": "CT CHEST W/O CONTRAST"}, lambda s: s.description == "CT CHEST W/O CONTRAST"),
        ({"StudyDescription": "MR BRAIN*"}, lambda s: s.description.startswith("MR BRAIN")),
        ({"StudyDate": "20200101-20221231"}, lambda s: "20200101" <= s.study_date <= "20221231"),
        ({"StudyDate": "20210101-"}, lambda s: s.study_date >= "20210101"),
        ({"StudyDate": "-20191231"}, lambda s: s.study_date <= "20191231"),
        ({"ModalitiesInStudy": "MR"}, lambda s: s.modality == "MR"),
        ({"ModalitiesInStudy": "CT\\MR"}, lambda s: True),  # backslash list: Orthanc needs commas
        ({"AccessionNumber": "ACC100?"}, lambda s: s.accession.startswith("ACC100")),
        ({"StudyInstanceUID": DATASET_SPECS[0].study_uid}, lambda s: s is DATASET_SPECS[0]),
    ],
    ids=lambda value: None if callable(value) else repr(value),  # no address in an id: xdist's workers compare them
)
def test_study_search(stowed: dict[str, Any], filters: dict[str, str], predicate: Any) -> None:
    ds = host_for(stowed["url"]).active_data_source
    assert study_uids(ds.query.studies.search(**filters)) == expected(predicate)


def test_uid_lists_paging_and_iteration(stowed: dict[str, Any]) -> None:
    ds = host_for(stowed["url"]).active_data_source
    two = [DATASET_SPECS[0].study_uid, DATASET_SPECS[2].study_uid]
    assert study_uids(ds.query.studies.search(StudyInstanceUID=two)) == set(two)
    first = ds.query.studies.search(limit=2)
    second = ds.query.studies.search(limit=2, offset=2)
    assert len(first) == 2 and len(second) == 2 and study_uids(first) | study_uids(second) == expected(lambda s: True)
    # an exact PN filter is widened for Orthanc and narrowed here: paging must still be exact
    lee = ds.query.studies.search(PatientName="LEE^ANNA^K", limit=1, offset=1)
    assert len(lee) == 1 and lee[0]["PatientName"] == {"Alphabetic": "LEE^ANNA^K"}
    every = list(ds.helpers.iter_search("study", page_size=1))
    assert study_uids(every) == expected(lambda s: True) and len(every) == len(DATASET_SPECS)


def test_series_and_instance_search(stowed: dict[str, Any]) -> None:
    ds = host_for(stowed["url"]).active_data_source
    spec = DATASET_SPECS[0]
    series = ds.query.series.search(spec.study_uid)
    mine = [d for d in stowed["datasets"] if d.StudyInstanceUID == spec.study_uid]
    assert {s["SeriesInstanceUID"] for s in series} == {d.SeriesInstanceUID for d in mine}
    lung = ds.query.series.search(spec.study_uid, SeriesDescription="AXIAL 1.25MM LUNG")
    assert {s["SeriesDescription"] for s in lung} == {"AXIAL 1.25MM LUNG"}
    first_series = mine[0].SeriesInstanceUID
    two = ds.query.instances.search(spec.study_uid, first_series, InstanceNumber="2")
    assert [i["SOPInstanceUID"] for i in two] == [
        d.SOPInstanceUID for d in mine if d.SeriesInstanceUID == first_series and d.InstanceNumber == 2
    ]


def test_metadata_matches_pydicom_tag_by_tag(stowed: dict[str, Any]) -> None:
    host = host_for(stowed["url"])
    ds = host.active_data_source
    spec = DATASET_SPECS[0]
    events: list[str] = []
    for name, event in vars(host.metadata_store.EVENTS).items():
        host.metadata_store.subscribe(event, lambda payload, name=name: events.append(name))
    summaries = ds.retrieve.series.metadata(spec.study_uid)
    assert events.count("STUDY_ADDED") == 1 and events.count("SERIES_ADDED") == 1
    assert events.count("INSTANCES_ADDED") == spec.n_series
    study = host.metadata_store.get_study(spec.study_uid)
    assert study is not None and set(summaries) == {s["SeriesInstanceUID"] for s in study["series"]}
    by_sop = {d.SOPInstanceUID: d for d in stowed["datasets"]}
    compared = 0
    for series in study["series"]:
        for inst in series["instances"]:
            original = from_pydicom(by_sop[inst["SOPInstanceUID"]], bulk_data_uri=lambda e: "x")
            for key, value in original.items():
                binary = isinstance(value, dict) and {"BulkDataURI", "InlineBinary"} & set(value)
                if key in ("_vrMap", "PixelData") or binary:
                    continue
                assert inst[key] == value, key
                compared += 1
            assert inst["PixelData"]["BulkDataURI"].startswith(stowed["url"])  # resolved to a full URL
            assert inst["imageId"].startswith(f"wadors:{stowed['url']}/studies/{spec.study_uid}/series/")
    assert compared > 100


def test_the_same_study_is_fetched_once(stowed: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    ds = host_for(stowed["url"]).active_data_source
    uid = DATASET_SPECS[1].study_uid
    caplog.set_level("DEBUG", logger="datasources.dicomweb")
    ds.retrieve.series.metadata(uid)
    first = sum("/metadata" in r.getMessage() for r in caplog.records)
    ds.retrieve.series.metadata(uid)
    assert sum("/metadata" in r.getMessage() for r in caplog.records) == first
    ds.delete_study_metadata(uid)
    ds.retrieve.series.metadata(uid)
    assert sum("/metadata" in r.getMessage() for r in caplog.records) == 2 * first


def test_lazy_load_hands_back_unstarted_tasks(stowed: dict[str, Any]) -> None:
    host = host_for(stowed["url"], enableStudyLazyLoad=True)
    ds = host.active_data_source
    spec = DATASET_SPECS[0]
    tasks = ds.retrieve.series.metadata(spec.study_uid, return_tasks=True)
    assert len(tasks) == spec.n_series and not any(t.started for t in tasks)
    study = host.metadata_store.get_study(spec.study_uid)
    assert study is not None and all(s["instances"] == [] for s in study["series"])  # summaries only
    assert {t.metadata["SeriesInstanceUID"] for t in tasks} == {s["SeriesInstanceUID"] for s in study["series"]}
    last = tasks[-1]
    last.run()  # the caller's order: the last series first
    loaded = host.metadata_store.get_series(spec.study_uid, last.metadata["SeriesInstanceUID"])
    assert loaded is not None and len(loaded["instances"]) == spec.n_instances
    assert all(len(s["instances"]) == 0 for s in study["series"] if s is not loaded)
    for task in tasks[:-1]:
        task.start().result(timeout=30)
    assert all(len(s["instances"]) == spec.n_instances for s in host.metadata_store.get_study(spec.study_uid)["series"])
    with pytest.raises(ConfigurationError, match="enableStudyLazyLoad"):
        host_for(stowed["url"]).active_data_source.retrieve.series.metadata(spec.study_uid, return_tasks=True)


def test_frames_and_bulk_data_are_the_stored_bytes(stowed: dict[str, Any]) -> None:
    host = host_for(stowed["url"])
    ds = host.active_data_source
    spec = DATASET_SPECS[3]  # the multi-frame study
    ds.retrieve.series.metadata(spec.study_uid)
    inst = host.metadata_store.get_study(spec.study_uid)["series"][0]["instances"][0]
    original = next(d for d in stowed["datasets"] if d.SOPInstanceUID == inst["SOPInstanceUID"])
    frame_size = original.Rows * original.Columns * 2
    frames = ds.retrieve.frames(spec.study_uid, inst["SeriesInstanceUID"], inst["SOPInstanceUID"], [1, 3])
    assert frames == [original.PixelData[:frame_size], original.PixelData[2 * frame_size : 3 * frame_size]]
    private = original.private_block(0x0029, "DATASOURCES TESTS 1.0")[0x11].value
    bulk_key = next(k for k, v in inst.items() if isinstance(v, dict) and "BulkDataURI" in v and k != "PixelData")
    assert ds.retrieve.bulk_data_uri(inst[bulk_key]["BulkDataURI"]) == private
    image_ids = ds.get_image_ids_for_display_set({"images": [inst]})
    assert len(image_ids) == spec.frames and image_ids[2].endswith("/frames/3")
    assert ds.retrieve.direct_url(inst).endswith(f"/instances/{inst['SOPInstanceUID']}/rendered")


def test_unknown_study_and_reject(stowed: dict[str, Any]) -> None:
    ds = host_for(stowed["url"]).active_data_source
    with pytest.raises(NotFoundError):
        ds.retrieve.series.metadata("1.2.3.4.5.6.7")
    with pytest.raises(NotSupportedError, match="supportsReject"):
        ds.reject.series(DATASET_SPECS[0].study_uid, "1.2")


def test_stow_reports_bad_inputs_without_stopping(stowed: dict[str, Any], tmp_path: Any) -> None:
    ds = host_for(stowed["url"]).active_data_source
    good = make_study(StudySpec("stow-mixed", n_instances=1))[0]
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("hello")
    seen: list[tuple[int, int]] = []
    result = ds.store.dicom([not_dicom, tmp_path / "missing.dcm", good], progress=lambda d, t: seen.append((d, t)))
    assert [o.status for o in result.outcomes] == ["failed", "failed", "stored"]
    assert "not DICOM" in (result.outcomes[0].reason or "") and "cannot read" in (result.outcomes[1].reason or "")
    assert seen[-1] == (3, 3)
    back = ds.query.instances.search(good.StudyInstanceUID, good.SeriesInstanceUID)
    assert [i["SOPInstanceUID"] for i in back] == [good.SOPInstanceUID]


def test_descriptions_are_asked_for(stowed: dict[str, Any]) -> None:
    ds = host_for(stowed["url"]).active_data_source
    mine = {s.study_uid for s in DATASET_SPECS}
    rows = [r for r in ds.query.studies.search() if r["StudyInstanceUID"] in mine]  # other tests store more
    assert {r["StudyInstanceUID"]: r.get("StudyDescription") for r in rows} == {
        s.study_uid: s.description for s in DATASET_SPECS
    }
    series = ds.query.series.search(DATASET_SPECS[0].study_uid)
    assert all(s.get("SeriesDescription") for s in series)


def test_compressed_and_plain_answers_from_orthanc_give_the_same_metadata(stowed: dict[str, Any]) -> None:
    """Orthanc gzips when asked (``compression: gzip``) and not under ``auto`` on loopback: same data either way."""
    spec = DATASET_SPECS[0]
    loaded = {}
    for compression in ("gzip", "none", "auto"):
        host = host_for(stowed["url"], requestOptions={"compression": compression})
        host.active_data_source.retrieve.series.metadata(spec.study_uid)
        record = host.metadata_store.get_study(spec.study_uid)
        loaded[compression] = sorted(
            ({k: v for k, v in i.items() if k not in ("imageId", "wadoRoot", "wadoUri")} for s in record["series"]
             for i in s["instances"]), key=lambda i: i["SOPInstanceUID"],
        )  # fmt: skip
    assert loaded["gzip"] == loaded["none"] == loaded["auto"]
    assert len(loaded["gzip"]) == spec.n_series * spec.n_instances
