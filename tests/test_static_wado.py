"""Static WADO: a static DICOMweb tree on a plain HTTP server, the client applying the query itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datasources import Host
from support.dicomgen import StudySpec, make_study
from support.statictree import build_static_tree, serve_static_tree

SPECS = [
    StudySpec("st-lee-ct", patient_name="LEE^ANNA^K", patient_id="MRN123", modality="CT", study_date="20190412",
              study_time="091500", description="CT CHEST W/O CONTRAST", accession="ACC1001", n_series=2, n_instances=2),
    StudySpec("st-lee-mr", patient_name="LEE^ANNA^K", patient_id="MRN123", modality="MR", study_date="20210930",
              study_time="143000", description="MR BRAIN W/WO CONTRAST", accession="ACC1002", n_instances=2),
    StudySpec("st-eel", patient_name="EELS^ANNA", patient_id="MRN777", modality="CT", study_date="20200105",
              study_time="235959", description="CT ABDOMEN", accession="ACC2001", n_instances=1),
    StudySpec("st-okafor", patient_name="OKAFOR^NGOZI^A", patient_id="MRN999", modality="MR", study_date="20231111",
              study_time="070000", description="MR KNEE", accession="XYZ3001", n_instances=1, frames=3),
]  # fmt: skip


@pytest.fixture(scope="module", params=[True, False], ids=["content-encoding", "bare-gzip"])
def static_host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root: Path = tmp_path_factory.mktemp("static")
    datasets = [ds for spec in SPECS for ds in make_study(spec)]
    build_static_tree(datasets, root)
    with serve_static_tree(root, content_encoding=request.param) as url:
        configuration = {
            "friendlyName": "static",
            "wadoRoot": url,
            "qidoRoot": url,
            "staticWado": True,
            "supportsFuzzyMatching": True,
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
            "singlepart": "bulkdata,video,pdf,image",
        }
        host = Host.from_config(
            {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "static",
                              "configuration": configuration}]}
        )  # fmt: skip
        yield host, datasets


def uids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["StudyInstanceUID"] for r in rows)


def want(predicate: Any) -> list[str]:
    return sorted(s.study_uid for s in SPECS if predicate(s))


@pytest.mark.parametrize(
    ("filters", "predicate"),
    [
        ({}, lambda s: True),
        ({"PatientName": "LEE*"}, lambda s: s.patient_name.startswith("LEE")),  # OHIF: substring, finds EELS too
        ({"PatientName": "*ANNA*"}, lambda s: "ANNA" in s.patient_name),
        ({"PatientName": "l?e^anna^k"}, lambda s: s.patient_name == "LEE^ANNA^K"),
        ({"PatientID": "mrn123"}, lambda s: s.patient_id == "MRN123"),  # case-insensitive exact
        ({"AccessionNumber": "ACC*"}, lambda s: s.accession.startswith("ACC")),
        ({"StudyDescription": "*contrast"}, lambda s: s.description.endswith("CONTRAST")),
        ({"StudyDate": "20200101-"}, lambda s: s.study_date >= "20200101"),
        ({"StudyDate": "-20200105"}, lambda s: s.study_date <= "20200105"),
        ({"StudyDate": "20190101-20201231"}, lambda s: "20190101" <= s.study_date <= "20201231"),
        ({"StudyTime": "080000-160000"}, lambda s: "080000" <= s.study_time <= "160000"),
        ({"ModalitiesInStudy": "MR"}, lambda s: s.modality == "MR"),
        ({"ModalitiesInStudy": "US\\MR"}, lambda s: s.modality == "MR"),
        ({"ReferringPhysicianName": "SMITH*"}, lambda s: True),
        ({"StudyInstanceUID": f"{SPECS[0].study_uid}\\{SPECS[3].study_uid}"}, lambda s: s in (SPECS[0], SPECS[3])),
    ],
    ids=lambda value: None if callable(value) else repr(value),  # no address in an id: xdist's workers compare them
)
def test_study_filters(static_host: Any, filters: dict[str, str], predicate: Any) -> None:
    host, _ = static_host
    assert uids(host.active_data_source.query.studies.search(**filters)) == want(predicate)


def test_fuzzy_names_and_paging_after_filtering(static_host: Any) -> None:
    ds = static_host[0].active_data_source
    assert uids(ds.query.studies.search(PatientName="ann lee", fuzzymatching=True)) == want(
        lambda s: s.patient_name == "LEE^ANNA^K"
    )
    everything = ds.query.studies.search(ModalitiesInStudy="CT")
    page = ds.query.studies.search(ModalitiesInStudy="CT", limit=1, offset=1)
    assert len(everything) == 2 and [r["StudyInstanceUID"] for r in page] == [everything[1]["StudyInstanceUID"]]
    assert ds.query.studies.search(limit=2, offset=3) == ds.query.studies.search()[3:5]


def test_series_filters(static_host: Any) -> None:
    ds = static_host[0].active_data_source
    spec = SPECS[0]
    series = ds.query.series.search(spec.study_uid)
    assert len(series) == 2
    assert [s["SeriesNumber"] for s in ds.query.series.search(spec.study_uid, SeriesNumber="2")] == [2]
    assert ds.query.series.search(spec.study_uid, Modality="MR") == []
    uid = series[0]["SeriesInstanceUID"]
    assert [s["SeriesInstanceUID"] for s in ds.query.series.search(spec.study_uid, SeriesInstanceUID=uid)] == [uid]


def test_metadata_frames_and_relative_bulk_data(static_host: Any) -> None:
    host, datasets = static_host
    ds = host.active_data_source
    spec = SPECS[3]
    ds.retrieve.series.metadata(spec.study_uid)
    inst = host.metadata_store.get_study(spec.study_uid)["series"][0]["instances"][0]
    original = next(d for d in datasets if d.SOPInstanceUID == inst["SOPInstanceUID"])
    url = inst["PixelData"]["BulkDataURI"]
    assert url.endswith(f"/studies/{spec.study_uid}/bulkdata/{original.SOPInstanceUID}-7FE00010.raw")
    assert ds.retrieve.bulk_data_uri(url) == original.PixelData
    size = original.Rows * original.Columns * 2
    assert ds.retrieve.frames(spec.study_uid, inst["SeriesInstanceUID"], inst["SOPInstanceUID"], 2) == [
        original.PixelData[size : 2 * size]
    ]


def test_instance_filters(static_host: Any) -> None:
    host, datasets = static_host
    ds = host.active_data_source
    spec = SPECS[0]
    mine = [d for d in datasets if d.StudyInstanceUID == spec.study_uid]
    series_uid = mine[0].SeriesInstanceUID
    in_series = [d for d in mine if d.SeriesInstanceUID == series_uid]
    rows = ds.query.instances.search(spec.study_uid, series_uid)
    assert sorted(r["SOPInstanceUID"] for r in rows) == sorted(d.SOPInstanceUID for d in in_series)
    second = ds.query.instances.search(spec.study_uid, series_uid, InstanceNumber="2")
    assert [r["SOPInstanceUID"] for r in second] == [d.SOPInstanceUID for d in in_series if d.InstanceNumber == 2]
    one = in_series[0].SOPInstanceUID
    assert [r["SOPInstanceUID"] for r in ds.query.instances.search(spec.study_uid, series_uid, SOPInstanceUID=one)] == [
        one
    ]
