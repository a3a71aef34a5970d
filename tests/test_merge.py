"""The merge source over real members: two DICOM JSON sources (the bundled sample and a file
this test writes, sharing one study), the test extension's in-memory source, a dicomjson
source whose file is missing and a dicomweb source on a closed loopback port.

Routing is observed through ``probe`` sources: real dicomjson sources, registered in-process,
that also record which of their members were called.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import shutil
import subprocess
import threading
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import SAMPLE_JSON
from datasources import Host, hookimpl
from datasources.errors import (
    BackendError,
    ConfigurationError,
    ConnectionFailedError,
    InvalidQueryError,
    NotFoundError,
    NotSupportedError,
)
from datasources.interface import MEMBERS, IWebApiDataSource
from datasources.results import SeriesLoadTask
from datasources_default.merge import TAG, AllMembersFailedError, MergedMapping, MergedResults
from support.ports import free_port

SAMPLE_DIR = SAMPLE_JSON.parent
DICOMJSON = "default.dataSourcesModule.dicomjson"
MERGE = "default.dataSourcesModule.merge"
PROBE = "probe.dataSourcesModule.probe"

#: barriers the probe's study search waits on, by name (a configuration holds JSON only)
BARRIERS: dict[str, threading.Barrier] = {}


# -- the probe extension: a dicomjson source that records its calls ---------------------


def create_probe_api(configuration: Mapping[str, Any], host: Any = None) -> Any:
    from datasources_default.dicomjson import create_dicomjson_api

    conf = dict(configuration)
    barrier = BARRIERS.get(conf.pop("barrier", ""))
    inner = create_dicomjson_api(conf, host)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    lock = threading.Lock()

    def recorded(path: str) -> Any:
        node: Any = inner
        for part in path.split("."):
            node = getattr(node, part)

        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                calls.append((path, args, kwargs))
            if path == "query.studies.search" and barrier is not None:
                barrier.wait()  # both members inside their search at once, or this times out
            return node(*args, **kwargs)

        return call

    members: dict[str, Any] = {}
    for path in MEMBERS:
        parts = path.split(".")
        tree = members
        for part in parts[:-1]:
            tree = tree.setdefault(part, {})
        tree[parts[-1]] = recorded(path)

    def calls_to(path: str | None = None) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        with lock:
            return [c for c in calls if path is None or c[0] == path]

    return IWebApiDataSource.create(members, helpers={"calls": calls_to})


def probe_extension() -> types.ModuleType:
    mod = types.ModuleType("probe")
    mod.getDataSourcesModule = hookimpl(  # type: ignore[attr-defined]
        lambda: [{"name": "probe", "type": "jsonApi", "createDataSource": create_probe_api}]
    )
    return mod


# -- data: a second DICOM JSON file with one study shared with the sample ----------------


def sample_document() -> dict[str, Any]:
    return json.loads(SAMPLE_JSON.read_text(encoding="utf-8"))


def _instance(template: Mapping[str, Any], sop: str, number: int, rel: str) -> dict[str, Any]:
    inst = copy.deepcopy(dict(template))
    inst["metadata"]["SOPInstanceUID"] = sop
    inst["metadata"]["InstanceNumber"] = number
    inst["metadata"]["PixelData"] = {"BulkDataURI": rel}
    inst["url"] = f"dicomweb:{rel}"
    return inst


class Extra:
    """The second file: UIDs of what it shares with the sample, and of what only it has."""

    def __init__(self, folder: Path) -> None:
        sample = sample_document()
        shared = sample["studies"][0]
        self.shared_study = shared["StudyInstanceUID"]
        self.sample_patient = shared["PatientName"]["Alphabetic"]
        self.shared_series = shared["series"][0]["SeriesInstanceUID"]  # in both files
        self.sample_only_series = shared["series"][1]["SeriesInstanceUID"]
        self.sample_shared_instances = len(shared["series"][0]["instances"])
        self.sample_studies = [s["StudyInstanceUID"] for s in sample["studies"]]
        self.new_series = "2.25.900000000000000000000000000000000001"
        self.new_study = "2.25.900000000000000000000000000000000002"
        self.new_study_series = "2.25.900000000000000000000000000000000003"
        template = shared["series"][0]["instances"][0]
        source_file = SAMPLE_DIR / template["url"].removeprefix("dicomweb:")
        (folder / "files").mkdir()
        self.files: dict[str, Path] = {}
        for name in ("dup", "c1", "c2", "n1"):
            target = folder / "files" / f"{name}.dcm"
            shutil.copyfile(source_file, target)
            self.files[name] = target
        copied_shared = copy.deepcopy(shared["series"][0])
        copied_shared["SeriesDescription"] = "extra's copy of a shared series"
        copied_shared["instances"] = [
            _instance(template, "2.25.900000000000000000000000000000000011", 99, "files/dup.dcm")
        ]
        new_series = {
            "SeriesInstanceUID": self.new_series,
            "SeriesNumber": 9,
            "Modality": "SR",
            "SeriesDescription": "only in extra",
            "instances": [
                _instance(template, "2.25.900000000000000000000000000000000012", 1, "files/c1.dcm"),
                _instance(template, "2.25.900000000000000000000000000000000013", 2, "files/c2.dcm"),
            ],
        }
        overlapping = {k: v for k, v in shared.items() if k != "series"}
        overlapping["PatientName"] = {"Alphabetic": "EXTRA^COPY"}
        overlapping["StudyDescription"] = "extra's copy of the shared study"
        overlapping["series"] = [copied_shared, new_series]
        new_study = {
            "StudyInstanceUID": self.new_study,
            "PatientName": {"Alphabetic": "NEW^PATIENT"},
            "PatientID": "NEW-1",
            "StudyDate": "20240101",
            "StudyDescription": "only in extra",
            "series": [
                {
                    "SeriesInstanceUID": self.new_study_series,
                    "SeriesNumber": 1,
                    "Modality": "CT",
                    "instances": [_instance(template, "2.25.900000000000000000000000000000000014", 1, "files/n1.dcm")],
                }
            ],
        }
        self.path = folder / "extra.json"
        self.path.write_text(json.dumps({"studies": [overlapping, new_study]}), encoding="utf-8")


@pytest.fixture
def extra(tmp_path: Path) -> Extra:
    return Extra(tmp_path)


def merge_entry(name: str, members: list[str], default: str | None = None, **conf: Any) -> dict[str, Any]:
    series_merge: dict[str, Any] = {"dataSourceNames": members}
    if default is not None:
        series_merge["defaultDataSourceName"] = default
    return {"namespace": MERGE, "sourceName": name, "configuration": {"seriesMerge": series_merge, **conf}}


def make_host(extra: Extra, *entries: dict[str, Any], probe: bool = False) -> Host:
    kind = PROBE if probe else DICOMJSON
    sources = [
        {"namespace": kind, "sourceName": "sample", "configuration": {"bundled": "sample"}},
        {"namespace": kind, "sourceName": "extra", "configuration": {"path": str(extra.path)}},
        *entries,
    ]
    config = {"defaultDataSourceName": "sample", "dataSources": sources}
    return Host(config, extensions={"probe": probe_extension()} if probe else None)


@pytest.fixture
def host(extra: Extra) -> Iterator[Host]:
    h = make_host(
        extra,
        merge_entry("merged", ["sample", "extra"], "sample", friendlyName="Everything"),
        merge_entry("reversed", ["extra", "sample"], "sample"),
        probe=True,
    )
    yield h
    for name in ("merged", "reversed"):
        h.get_data_source(name).helpers.close()


def uids(rows: list[Mapping[str, Any]], key: str = "StudyInstanceUID") -> list[str]:
    return [r[key] for r in rows]


# -- search: fan-out, de-duplication, paging ---------------------------------------------


def test_studies_are_merged_and_the_first_listed_member_wins(host: Host, extra: Extra) -> None:
    merged = host.get_data_source("merged").query.studies.search()
    assert isinstance(merged, MergedResults) and isinstance(merged, list)
    assert merged.failures == {}
    assert uids(merged) == [*extra.sample_studies, extra.new_study]  # member order, each UID once
    shared = next(r for r in merged if r["StudyInstanceUID"] == extra.shared_study)
    assert shared["PatientName"]["Alphabetic"] == extra.sample_patient  # sample is listed first
    assert merged.sources[extra.shared_study] == ("sample", "extra")
    assert merged.sources[extra.new_study] == ("extra",)

    flipped = host.get_data_source("reversed").query.studies.search()
    assert uids(flipped) == [extra.shared_study, extra.new_study] + [
        u for u in extra.sample_studies if u != extra.shared_study
    ]
    shared = next(r for r in flipped if r["StudyInstanceUID"] == extra.shared_study)
    # list order decides, not defaultDataSourceName (sample is the default of both)
    assert shared["PatientName"]["Alphabetic"] == "EXTRA^COPY"
    assert flipped.sources[extra.shared_study] == ("extra", "sample")


def test_filters_apply_in_each_member_before_merging(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    # only extra's copy of the shared study matches: it is returned even though sample is first
    (row,) = ds.query.studies.search(PatientName="extra*")
    assert row["StudyInstanceUID"] == extra.shared_study and row["PatientName"]["Alphabetic"] == "EXTRA^COPY"
    assert uids(ds.query.studies.search(StudyInstanceUID=[extra.new_study, extra.sample_studies[1]])) == [
        extra.sample_studies[1],
        extra.new_study,
    ]
    with pytest.raises(InvalidQueryError, match="PatientName"):
        ds.query.studies.search(patientname="x")  # checked once, before any member is asked


@pytest.mark.parametrize(("offset", "limit"), [(0, 2), (5, 2), (6, 5), (1, 100), (7, 1), (3, 0)])
def test_limit_and_offset_apply_to_the_merged_list(host: Host, offset: int, limit: int) -> None:
    ds = host.get_data_source("merged")
    everything = uids(ds.query.studies.search())
    page = ds.query.studies.search(limit=limit, offset=offset)
    assert uids(page) == everything[offset : offset + limit]
    # each member was asked for no more than the page could need
    for name in ("sample", "extra"):
        asked = host.get_data_source(name).helpers.calls("query.studies.search")[-1][1][0]
        assert asked["limit"] == offset + limit and "offset" not in asked


def test_members_are_searched_concurrently(extra: Extra) -> None:
    BARRIERS["both"] = threading.Barrier(2, timeout=10)
    h = Host(
        {
            "dataSources": [
                {"namespace": PROBE, "sourceName": "a", "configuration": {"bundled": "sample", "barrier": "both"}},
                {"namespace": PROBE, "sourceName": "b", "configuration": {"path": str(extra.path), "barrier": "both"}},
                merge_entry("m", ["a", "b"]),
            ]
        },
        extensions={"probe": probe_extension()},
    )
    try:
        # sequential calls would leave the first member waiting at the barrier until it breaks
        rows = h.get_data_source("m").query.studies.search()
    finally:
        del BARRIERS["both"]
    assert rows.failures == {} and extra.new_study in uids(rows)


def test_series_are_tagged_with_the_member_they_come_from(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    rows = ds.query.series.search(extra.shared_study)
    tags = {r["SeriesInstanceUID"]: r[TAG][0] for r in rows}
    assert tags == {extra.shared_series: "sample", extra.sample_only_series: "sample", extra.new_series: "extra"}
    shared = next(r for r in rows if r["SeriesInstanceUID"] == extra.shared_series)
    assert shared["SeriesDescription"] != "extra's copy of a shared series"
    assert rows.sources[extra.shared_series] == ("sample", "extra")
    assert ds.helpers.source_of(extra.new_series) == "extra"
    # a study only one member holds: the other answers "not here", which is no failure
    only = ds.query.series.search(extra.new_study)
    assert only.failures == {} and [(r["SeriesInstanceUID"], r[TAG][0]) for r in only] == [
        (extra.new_study_series, "extra")
    ]
    # the members' own records are not changed by the tagging
    (raw,) = host.get_data_source("extra").query.series.search(extra.new_study)
    assert TAG not in raw


def test_instances_are_merged_by_sop_instance_uid(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    rows = ds.query.instances.search(extra.shared_study, extra.shared_series)
    # sample's instances, then extra's one different instance of the shared series
    assert len(rows) == extra.sample_shared_instances + 1
    assert rows.sources["2.25.900000000000000000000000000000000011"] == ("extra",)
    page = ds.query.instances.search(extra.shared_study, None, {"limit": 2, "offset": 1})
    assert uids(page, "SOPInstanceUID") == uids(ds.query.instances.search(extra.shared_study), "SOPInstanceUID")[1:3]


# -- retrieve and routing ------------------------------------------------------------------


def test_series_metadata_loads_each_series_from_its_winner(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    loaded = ds.retrieve.series.metadata(extra.shared_study)
    assert isinstance(loaded, MergedMapping) and loaded.failures == {}
    assert set(loaded) == {extra.shared_series, extra.sample_only_series, extra.new_series}
    assert loaded[extra.new_series][TAG][0] == "extra"

    sample_calls = host.get_data_source("sample").helpers.calls("retrieve.series.metadata")
    extra_calls = host.get_data_source("extra").helpers.calls("retrieve.series.metadata")
    assert [c[2]["series_instance_uids"] for c in sample_calls] == [None]  # all its series: the whole study
    assert [c[2]["series_instance_uids"] for c in extra_calls] == [[extra.new_series]]  # never the shared one

    store = host.metadata_store
    study = store.get_study(extra.shared_study)
    assert study is not None and study["isLoaded"]
    shared = store.get_series(extra.shared_study, extra.shared_series)
    assert shared[TAG][0] == "sample" and len(shared["instances"]) == extra.sample_shared_instances
    new = store.get_series(extra.shared_study, extra.new_series)
    assert new[TAG][0] == "extra"
    assert {i["url"] for i in new["instances"]} == {"dicomweb:files/c1.dcm", "dicomweb:files/c2.dcm"}


def test_series_metadata_of_some_series_and_of_unknown_ones(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    loaded = ds.retrieve.series.metadata(extra.shared_study, series_instance_uids=[extra.new_series])
    assert list(loaded) == [extra.new_series]
    assert host.get_data_source("sample").helpers.calls("retrieve.series.metadata") == []
    with pytest.raises(NotFoundError, match="none of the members"):
        ds.retrieve.series.metadata(extra.shared_study, series_instance_uids=["2.25.1"])
    with pytest.raises(NotFoundError, match="none of the members"):
        ds.retrieve.series.metadata("2.25.2")


def test_series_load_tasks_run_when_started(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    tasks = ds.retrieve.series.metadata(extra.shared_study, return_tasks=True)
    assert isinstance(tasks, MergedResults) and all(isinstance(t, SeriesLoadTask) for t in tasks)
    assert {t.metadata["SeriesInstanceUID"]: t.metadata[TAG][0] for t in tasks} == {
        extra.shared_series: "sample",
        extra.sample_only_series: "sample",
        extra.new_series: "extra",
    }
    assert host.metadata_store.get_series(extra.shared_study, extra.new_series) is None  # nothing loaded yet
    new = next(t for t in tasks if t.metadata["SeriesInstanceUID"] == extra.new_series)
    assert new.start().result(timeout=30)[TAG][0] == "extra"
    series = host.metadata_store.get_series(extra.shared_study, extra.new_series)
    assert series[TAG][0] == "extra" and len(series["instances"]) == 2
    assert host.metadata_store.get_series(extra.shared_study, extra.shared_series) is None  # still not started


def test_urls_and_bulk_data_come_from_the_series_member(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    ds.retrieve.series.metadata(extra.shared_study)
    store = host.metadata_store
    new_instance = store.get_series(extra.shared_study, extra.new_series)["instances"][0]
    sample_instance = store.get_series(extra.shared_study, extra.shared_series)["instances"][0]

    # relative BulkDataURIs resolve against the folder of the member's own JSON file
    assert Path(ds.retrieve.direct_url(new_instance)) == extra.files["c1"].resolve()
    assert Path(ds.retrieve.direct_url(instance=sample_instance)).parent == SAMPLE_DIR.resolve() / "instances"

    data = ds.retrieve.bulk_data_uri("files/c2.dcm", series_instance_uid=extra.new_series)
    assert data == pydicom.dcmread(extra.files["c2"]).PixelData
    assert host.get_data_source("extra").helpers.calls("retrieve.bulk_data_uri")
    assert not host.get_data_source("sample").helpers.calls("retrieve.bulk_data_uri")
    # the same relative URI asked of the default member (no series given) is not in sample's folder
    with pytest.raises(NotFoundError):
        ds.retrieve.bulk_data_uri("files/c2.dcm")


def test_image_ids_go_to_the_member_of_each_series(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    ds.retrieve.series.metadata(extra.shared_study)
    store = host.metadata_store
    new_instances = store.get_series(extra.shared_study, extra.new_series)["instances"]
    sample_instances = store.get_series(extra.shared_study, extra.shared_series)["instances"]
    sample_probe, extra_probe = (host.get_data_source(n).helpers for n in ("sample", "extra"))

    assert ds.get_image_ids_for_instance(new_instances[0]) == "dicomweb:files/c1.dcm"
    assert len(extra_probe.calls("get_image_ids_for_instance")) == 1
    assert ds.get_image_ids_for_instance(sample_instances[0], frame=0).endswith("?frame=0")
    assert len(sample_probe.calls("get_image_ids_for_instance")) == 1

    ids = ds.get_image_ids_for_display_set({"images": new_instances})
    assert ids == ["dicomweb:files/c1.dcm", "dicomweb:files/c2.dcm"]
    assert len(extra_probe.calls("get_image_ids_for_display_set")) == 1
    assert not sample_probe.calls("get_image_ids_for_display_set")

    # a display set mixing members: each run goes to its member, the order is kept
    mixed = [sample_instances[0], new_instances[0], sample_instances[1]]
    assert ds.get_image_ids_for_display_set(mixed) == [i["url"] for i in mixed]
    assert len(sample_probe.calls("get_image_ids_for_display_set")) == 2
    assert len(extra_probe.calls("get_image_ids_for_display_set")) == 2


def test_routes_learnt_from_searches_alone(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    ds.query.series.search(extra.shared_study)  # nothing is loaded into the store
    assert host.metadata_store.get_series(extra.shared_study, extra.new_series) is None
    bare = {"SOPInstanceUID": "2.25.5", "SeriesInstanceUID": extra.new_series, "url": "dicomweb:files/c1.dcm"}
    ds.get_image_ids_for_instance(bare)
    assert len(host.get_data_source("extra").helpers.calls("get_image_ids_for_instance")) == 1
    assert not host.get_data_source("sample").helpers.calls("get_image_ids_for_instance")
    # a study only one member holds routes there even for a series never listed
    ds.query.studies.search(StudyInstanceUID=extra.new_study)
    ds.retrieve.bulk_data_uri("files/n1.dcm", study_instance_uid=extra.new_study)
    assert len(host.get_data_source("extra").helpers.calls("retrieve.bulk_data_uri")) == 1


def test_routing_by_tag_when_the_series_was_never_seen(host: Host) -> None:
    ds = host.get_data_source("reversed")  # has seen nothing yet
    unseen = {"SOPInstanceUID": "2.25.77", "SeriesInstanceUID": "2.25.78", "url": "dicomweb:x.dcm"}
    ds.get_image_ids_for_instance({**unseen, TAG: "extra"})
    assert len(host.get_data_source("extra").helpers.calls("get_image_ids_for_instance")) == 1
    ds.get_image_ids_for_instance(unseen)  # no route, no tag: the default member
    assert len(host.get_data_source("sample").helpers.calls("get_image_ids_for_instance")) == 1
    ds.get_image_ids_for_instance({**unseen, TAG: "ORTHANC"})  # a server's AE title, not a member
    assert len(host.get_data_source("sample").helpers.calls("get_image_ids_for_instance")) == 2


def test_reject_goes_to_the_series_member(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    # nothing searched yet: the merge source looks the series up, never guesses a member
    with pytest.raises(NotSupportedError) as caught:
        ds.reject.series(extra.shared_study, extra.new_series)
    assert caught.value.source == "extra"
    assert host.get_data_source("extra").helpers.calls("reject.series")
    assert not host.get_data_source("sample").helpers.calls("reject.series")
    with pytest.raises(NotFoundError, match="no member"):
        ds.reject.series(extra.shared_study, "2.25.404")


def test_store_goes_to_the_default_member(extra: Extra) -> None:
    h = make_host(
        extra,
        {"namespace": "testext.dataSourcesModule.memory", "sourceName": "mem", "configuration": {}},
        merge_entry("merged", ["sample", "extra", "mem"], "mem"),
        merge_entry("readonly", ["sample", "extra"], "extra"),
    )
    ds = h.get_data_source("merged")
    dataset = pydicom.dcmread(extra.files["c1"])
    result = ds.store.dicom([dataset])
    assert [o.status for o in result.outcomes] == ["stored"]
    assert h.get_data_source("mem").helpers.stored() == [dataset]
    assert ds.get_config()["seriesMerge"] == {
        "dataSourceNames": ["sample", "extra", "mem"],
        "defaultDataSourceName": "mem",
    }
    with pytest.raises(NotSupportedError) as caught:
        h.get_data_source("readonly").store.dicom([dataset])
    assert caught.value.source == "extra"


def test_study_uids_from_the_route_or_from_every_member(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    assert ds.get_study_instance_uids(query={"StudyInstanceUIDs": "1.2,3.4"}) == ["1.2", "3.4"]
    assert ds.get_study_instance_uids() == [*extra.sample_studies, extra.new_study]
    assert ds.initialize(params={}, query={"StudyInstanceUIDs": "5.6"}) == ["5.6"]


def test_delete_study_metadata_reaches_every_member(host: Host, extra: Extra) -> None:
    ds = host.get_data_source("merged")
    ds.retrieve.series.metadata(extra.shared_study)
    assert extra.shared_study in host.metadata_store
    ds.delete_study_metadata(extra.shared_study)
    assert extra.shared_study not in host.metadata_store
    for name in ("sample", "extra"):
        assert [c[1] for c in host.get_data_source(name).helpers.calls("delete_study_metadata")] == [
            (extra.shared_study,)
        ]


def test_config_and_helpers(host: Host) -> None:
    ds = host.get_data_source("merged")
    config = ds.get_config()
    assert config["friendlyName"] == "Everything" and config["dicomUploadEnabled"] is False
    assert ds.helpers.members() == ["sample", "extra"]
    assert ds.helpers.default_member() == "sample"
    assert [i.type for i in host.data_sources if i.source_name == "merged"] == ["mergeApi"]


# -- failing members -----------------------------------------------------------------------


def test_a_failing_member_is_reported_not_fatal(extra: Extra, caplog: pytest.LogCaptureFixture) -> None:
    h = make_host(
        extra,
        {"namespace": DICOMJSON, "sourceName": "gone", "configuration": {"path": str(extra.path) + ".missing"}},
        merge_entry("merged", ["gone", "sample", "extra"], "sample"),
    )
    ds = h.get_data_source("merged")
    with caplog.at_level(logging.WARNING, logger="datasources.merge"):
        rows = ds.query.studies.search()
    assert uids(rows) == [*extra.sample_studies, extra.new_study]
    assert list(rows.failures) == ["gone"] and isinstance(rows.failures["gone"], NotFoundError)
    assert "'gone'" in caplog.text and "does not exist" in caplog.text
    assert list(ds.helpers.last_failures()) == ["gone"]

    # series and retrieve of a study the healthy members hold: theirs come back, the failure is told
    series = ds.query.series.search(extra.shared_study)
    assert len(series) == 3 and list(series.failures) == ["gone"]
    loaded = ds.retrieve.series.metadata(extra.shared_study)
    assert len(loaded) == 3 and list(loaded.failures) == ["gone"]
    assert not h.metadata_store.get_study(extra.shared_study)["isLoaded"]  # not everything was asked

    # a member that fails later in a retrieve (its file deleted since it was read)
    ds.query.series.search(extra.new_study)
    extra.files["n1"].unlink()
    instance = {"StudyInstanceUID": extra.new_study, "SeriesInstanceUID": extra.new_study_series}
    with pytest.raises(NotFoundError):
        ds.retrieve.bulk_data_uri("files/n1.dcm", **{"series_instance_uid": instance["SeriesInstanceUID"]})


def test_a_dicomweb_member_on_a_closed_port_leaks_no_secret(extra: Extra, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-pa55"
    root = f"http://127.0.0.1:{free_port()}/dicom-web"
    h = make_host(
        extra,
        {
            "namespace": "default.dataSourcesModule.dicomweb",
            "sourceName": "pacs",
            "configuration": {
                "wadoRoot": root,
                "qidoRoot": root,
                "requestOptions": {"auth": f"admin:{secret}", "retries": 0, "timeout": 5},
            },
        },
        merge_entry("merged", ["pacs", "sample"], "sample"),
    )
    ds = h.get_data_source("merged")
    with caplog.at_level(logging.WARNING, logger="datasources.merge"):
        rows = ds.query.studies.search()
    assert uids(rows) == extra.sample_studies
    assert isinstance(rows.failures["pacs"], ConnectionFailedError)
    assert "'pacs'" in caplog.text
    assert secret not in caplog.text and secret not in repr(rows) and secret not in str(rows.failures["pacs"])


def test_every_member_failing_is_an_error_naming_each(extra: Extra) -> None:
    h = make_host(
        extra,
        {"namespace": DICOMJSON, "sourceName": "gone1", "configuration": {"path": str(extra.path) + ".1"}},
        {"namespace": DICOMJSON, "sourceName": "gone2", "configuration": {"path": str(extra.path) + ".2"}},
        merge_entry("merged", ["gone1", "gone2"]),
    )
    ds = h.get_data_source("merged")
    with pytest.raises(AllMembersFailedError) as caught:
        ds.query.studies.search()
    error = caught.value
    assert isinstance(error, BackendError)
    assert sorted(error.failures) == ["gone1", "gone2"]
    assert "'gone1'" in str(error) and "'gone2'" in str(error) and ".json.1" in str(error)
    with pytest.raises(AllMembersFailedError):
        ds.retrieve.series.metadata(extra.shared_study)


def test_an_operation_no_member_supports(extra: Extra) -> None:
    h = make_host(
        extra,
        {"namespace": "testext.dataSourcesModule.memory", "sourceName": "m1", "configuration": {}},
        {"namespace": "testext.dataSourcesModule.memory", "sourceName": "m2", "configuration": {}},
        merge_entry("merged", ["m1", "m2"]),
    )
    ds = h.get_data_source("merged")
    with pytest.raises(NotSupportedError) as caught:
        ds.retrieve.frames("1.2", "3.4", "5.6")  # routed to the default member, which has no frames
    assert caught.value.source == "m1"
    with pytest.raises(NotFoundError, match="no member"):
        ds.reject.series("1.2", "3.4")  # neither member lists the series: nothing is rejected anywhere


# -- configuration -------------------------------------------------------------------------


def test_unknown_member_is_a_configuration_error_listing_the_known(extra: Extra) -> None:
    h = make_host(extra, merge_entry("merged", ["sample", "nosuch"]))
    ds = h.get_data_source("merged")
    with pytest.raises(ConfigurationError) as caught:
        ds.query.studies.search()
    text = str(caught.value)
    assert "'nosuch'" in text and "'sample'" in text and "'extra'" in text
    assert len(h.get_data_source("sample").query.studies.search()) == len(extra.sample_studies)  # others work


def test_a_merge_including_itself_is_refused(extra: Extra) -> None:
    h = make_host(
        extra,
        merge_entry("loop", ["sample", "loop"]),
        merge_entry("m1", ["sample", "m2"]),
        merge_entry("m2", ["extra", "m1"]),
        merge_entry("outer", ["m2", "sample"]),
    )
    with pytest.raises(ConfigurationError, match="itself"):
        h.get_data_source("loop").query.studies.search()
    with pytest.raises(ConfigurationError, match="'m1' -> 'm2' -> 'm1'"):
        h.get_data_source("m1").query.studies.search()
    with pytest.raises(ConfigurationError, match="itself"):
        h.initialize_data_source("m2")


def test_a_merge_of_merges(extra: Extra) -> None:
    h = make_host(
        extra,
        merge_entry("inner", ["extra"]),
        merge_entry("outer", ["sample", "inner"]),
    )
    ds = h.get_data_source("outer")
    rows = ds.query.series.search(extra.shared_study)
    assert {r["SeriesInstanceUID"]: r[TAG][0] for r in rows}[extra.new_series] == "inner"
    loaded = ds.retrieve.series.metadata(extra.shared_study, series_instance_uids=[extra.new_series])
    assert loaded[extra.new_series][TAG][0] == "inner"
    # the inner merge tags it with its member ('extra'), then the outer one with its own ('inner')
    assert h.metadata_store.get_series(extra.shared_study, extra.new_series)[TAG][0] == "inner"


@pytest.mark.parametrize(
    ("configuration", "message"),
    [
        ({}, "seriesMerge is required"),
        ({"seriesMerge": {"dataSourceNames": []}}, "non-empty list"),
        ({"seriesMerge": {"dataSourceNames": ["a", "a"]}}, "more than once"),
        ({"seriesMerge": {"dataSourceNames": ["a"], "defaultDataSourceName": "b"}}, "not one of"),
        ({"seriesMerge": {"dataSourceNames": ["a", 3]}}, "non-names"),
        ({"seriesMerge": {"dataSourceNames": ["a"]}, "maxWorkers": 0}, "maxWorkers"),
    ],
)
def test_malformed_configuration_fails_when_the_host_is_created(configuration: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Host({"dataSources": [{"namespace": MERGE, "sourceName": "m", "configuration": configuration}]})


def test_default_member_defaults_to_the_first(extra: Extra) -> None:
    h = make_host(extra, merge_entry("m", ["extra", "sample"]))
    assert h.get_data_source("m").helpers.default_member() == "extra"


# -- the command line ----------------------------------------------------------------------


def test_cli_studies_and_series_on_a_merge_source(extra: Extra, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "dataSources": [
                    {"namespace": DICOMJSON, "sourceName": "sample", "configuration": {"bundled": "sample"}},
                    {"namespace": DICOMJSON, "sourceName": "extra", "configuration": {"path": str(extra.path)}},
                    merge_entry("merged", ["sample", "extra"], "sample"),
                ]
            }
        )
    )
    exe = shutil.which("datasources")
    assert exe
    done = subprocess.run(
        [exe, "studies", "-c", str(config), "-s", "merged", "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert uids(json.loads(done.stdout)) == [*extra.sample_studies, extra.new_study]
    table = subprocess.run([exe, "studies", "-c", str(config), "-s", "merged"], capture_output=True, text=True)
    assert table.returncode == 0 and f"Studies in merged ({len(extra.sample_studies) + 1})" in table.stdout
    series = subprocess.run(
        [exe, "series", extra.shared_study, "-c", str(config), "-s", "merged", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert series.returncode == 0, series.stderr
    assert {r["SeriesInstanceUID"]: r[TAG][0] for r in json.loads(series.stdout)}[extra.new_series] == "extra"
    metadata = subprocess.run(
        [exe, "metadata", extra.shared_study, "-c", str(config), "-s", "merged", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert metadata.returncode == 0, metadata.stderr
    shown = {s["SeriesInstanceUID"]: s for s in json.loads(metadata.stdout)["series"]}
    assert shown[extra.new_series][TAG][0] == "extra" and len(shown[extra.new_series]["instances"]) == 2


# -- docs/sources/merge.md, run as written -------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs/sources/merge.md"


def doc_blocks(language: str) -> list[str]:
    import re

    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_runs_as_written(tmp_path: Path) -> None:
    import shlex
    import sys

    config = next(b for b in doc_blocks("json") if '"dataSources":' in b)
    (tmp_path / "merged.json").write_text(config, encoding="utf-8")
    make_more, api = doc_blocks("python")
    (tmp_path / "make_more.py").write_text(make_more, encoding="utf-8")
    made = subprocess.run([sys.executable, "make_more.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    shared = made.stdout.strip()
    assert shared == sample_document()["studies"][0]["StudyInstanceUID"]

    exe = shutil.which("datasources")
    assert exe
    wide = {**os.environ, "COLUMNS": "250"}  # tables unfolded, names whole
    outputs = []
    for line in doc_blocks("bash")[0].splitlines():
        argv = shlex.split(line.replace("<StudyInstanceUID>", shared))
        done = subprocess.run([exe, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=wide)
        assert done.returncode == 0, (line, done.stderr)
        outputs.append(done)
    everything, copies, series, partial = outputs
    assert "Studies in merged (7)" in everything.stdout and "NEW^PATIENT" in everything.stdout
    assert "COPY^OF^SAMPLE" not in everything.stdout  # the sample's copy wins
    assert "Studies in merged (1)" in copies.stdout and "COPY^OF^SAMPLE" in copies.stdout
    assert sorted(r[TAG][0] for r in json.loads(series.stdout)) == ["more", "sample", "sample"]
    assert "Studies in partial (6)" in partial.stdout and "'gone'" in partial.stderr

    (tmp_path / "api.py").write_text(api, encoding="utf-8")
    ran = subprocess.run([sys.executable, "api.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    # every commented print in the page shows what it prints
    expected = [line.split("# ", 1)[1].strip() for line in api.splitlines() if line.startswith("print(")]
    assert ran.stdout.splitlines() == expected


# -- a real PACS as a member (Orthanc on loopback) -----------------------------------------


def _local_copy_of(orthanc_dataset: Any, folder: Path) -> dict[str, Any]:
    """A DICOM JSON file holding the first series of Orthanc's ``lee-ct`` study (same UIDs) and a
    series of its own, with a Part-10 file behind it."""
    from support.dicomgen import StudySpec, make_study, write_datasets

    spec = orthanc_dataset.study("lee-ct")
    shared_ds = [d for d in orthanc_dataset.datasets_of(spec.study_uid) if d.SeriesInstanceUID == spec.series_uid(0)]
    own = make_study(StudySpec("merge-local-own", n_series=1, n_instances=1))[0]
    own.StudyInstanceUID = spec.study_uid
    (own_file,) = write_datasets([own], folder / "files")

    def instance(ds: Any, url: str | None) -> dict[str, Any]:
        meta = {k: ds.get(k) for k in ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns")}
        return {"metadata": meta, **({"url": url} if url else {})}

    document = {
        "studies": [
            {
                "StudyInstanceUID": spec.study_uid,
                "PatientName": {"Alphabetic": "LOCAL^COPY"},
                "series": [
                    {
                        "SeriesInstanceUID": spec.series_uid(0),
                        "Modality": "CT",
                        "SeriesDescription": "local copy",
                        "instances": [instance(shared_ds[0], None)],
                    },
                    {
                        "SeriesInstanceUID": own.SeriesInstanceUID,
                        "Modality": own.Modality,
                        "instances": [instance(own, f"dicomweb:files/{own_file.name}")],
                    },
                ],
            }
        ]
    }
    path = folder / "local.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return {"path": path, "spec": spec, "own": own, "own_file": own_file}


def test_a_pacs_and_a_local_file_merged(orthanc_dataset: Any, tmp_path: Path) -> None:
    local = _local_copy_of(orthanc_dataset, tmp_path)
    spec = local["spec"]
    url = orthanc_dataset.dicomweb_url
    h = Host(
        {
            "dataSources": [
                {
                    "namespace": "default.dataSourcesModule.dicomweb",
                    "sourceName": "pacs",
                    "configuration": {"wadoRoot": url, "qidoRoot": url, "requestOptions": {"retries": 0}},
                },
                {"namespace": DICOMJSON, "sourceName": "local", "configuration": {"path": str(local["path"])}},
                merge_entry("merged", ["pacs", "local"], "pacs"),
            ]
        }
    )
    ds = h.get_data_source("merged")
    studies = ds.query.studies.search()
    assert sorted(uids(studies)) == sorted(orthanc_dataset.study_uids)
    assert studies.sources[spec.study_uid] == ("pacs", "local")
    lee = next(r for r in studies if r["StudyInstanceUID"] == spec.study_uid)
    assert lee["PatientName"]["Alphabetic"] == "LEE^ANNA^K"  # the PACS is listed first

    series = {r["SeriesInstanceUID"]: r[TAG][0] for r in ds.query.series.search(spec.study_uid)}
    own_series = local["own"].SeriesInstanceUID
    assert series == {spec.series_uid(0): "pacs", spec.series_uid(1): "pacs", own_series: "local"}

    loaded = ds.retrieve.series.metadata(spec.study_uid)
    assert loaded.failures == {} and set(loaded) == set(series)
    store = h.metadata_store
    pacs_instances = store.get_series(spec.study_uid, spec.series_uid(0))["instances"]
    assert len(pacs_instances) == spec.n_instances  # from Orthanc, not the local copy's one instance
    own_instance = store.get_series(spec.study_uid, own_series)["instances"][0]

    assert ds.get_image_ids_for_instance(pacs_instances[0]).startswith(f"wadors:{url}/studies/{spec.study_uid}")
    assert ds.get_image_ids_for_instance(own_instance) == f"dicomweb:files/{local['own_file'].name}"
    frame = pacs_instances[0]
    (pixels,) = ds.retrieve.frames(spec.study_uid, spec.series_uid(0), frame["SOPInstanceUID"], 1)
    assert pixels == orthanc_dataset.by_sop()[frame["SOPInstanceUID"]].PixelData

    async def on_a_loop() -> tuple[Any, Any]:  # as the gateway awaits them: the member's own lane, or None
        pacs = await ds.retrieve.frames_async(spec.study_uid, spec.series_uid(0), frame["SOPInstanceUID"], [1])
        mine = await ds.retrieve.frames_async(spec.study_uid, own_series, own_instance["SOPInstanceUID"], [1])
        return pacs, mine

    pacs_frames, local_frames = asyncio.run(on_a_loop())
    assert pacs_frames == [pixels] and local_frames is None  # dicomjson has no frames_async: a thread, then
    with pytest.raises(NotSupportedError) as caught:
        ds.retrieve.frames(spec.study_uid, own_series, own_instance["SOPInstanceUID"], 1)
    assert caught.value.source == "local"
    private = next(
        v for k, v in frame.items() if k.startswith("0029") and isinstance(v, Mapping) and "BulkDataURI" in v
    )
    data = ds.retrieve.bulk_data_uri(
        private["BulkDataURI"], study_instance_uid=spec.study_uid, series_instance_uid=spec.series_uid(0)
    )
    assert len(data) == 512
    assert Path(ds.retrieve.direct_url(own_instance)) == local["own_file"].resolve()
    ds.helpers.close()


def test_store_reaches_the_pacs_when_it_is_the_default(orthanc_empty: Any) -> None:
    from support.dicomgen import StudySpec, make_study

    url = orthanc_empty.dicomweb_url
    h = Host(
        {
            "dataSources": [
                {"namespace": DICOMJSON, "sourceName": "sample", "configuration": {"bundled": "sample"}},
                {
                    "namespace": "default.dataSourcesModule.dicomweb",
                    "sourceName": "pacs",
                    "configuration": {"wadoRoot": url, "qidoRoot": url, "requestOptions": {"retries": 0}},
                },
                merge_entry("merged", ["sample", "pacs"], "pacs"),
            ]
        }
    )
    datasets = make_study(StudySpec("merge-store", n_series=1, n_instances=2))
    result = h.get_data_source("merged").store.dicom(datasets)
    assert result.ok and len(result.stored) == 2
    assert datasets[0].StudyInstanceUID in orthanc_empty.study_uids()
    # and the stored study is found through the merge source at once
    rows = h.get_data_source("merged").query.studies.search(StudyInstanceUID=datasets[0].StudyInstanceUID)
    assert rows.sources == {datasets[0].StudyInstanceUID: ("pacs",)}


def test_lazy_tasks_from_a_lazy_pacs_and_an_eager_file(orthanc_dataset: Any, tmp_path: Path) -> None:
    local = _local_copy_of(orthanc_dataset, tmp_path)
    spec = local["spec"]
    url = orthanc_dataset.dicomweb_url
    h = Host(
        {
            "dataSources": [
                {
                    "namespace": "default.dataSourcesModule.dicomweb",
                    "sourceName": "pacs",
                    "configuration": {"wadoRoot": url, "qidoRoot": url, "enableStudyLazyLoad": True},
                },
                {"namespace": DICOMJSON, "sourceName": "local", "configuration": {"path": str(local["path"])}},
                merge_entry("merged", ["pacs", "local"], "pacs"),
            ]
        }
    )
    ds = h.get_data_source("merged")
    tasks = ds.retrieve.series.metadata(spec.study_uid, return_tasks=True)
    by_series = {t.metadata["SeriesInstanceUID"]: t for t in tasks}
    own_series = local["own"].SeriesInstanceUID
    assert {uid: t.metadata[TAG][0] for uid, t in by_series.items()} == {
        spec.series_uid(0): "pacs",
        spec.series_uid(1): "pacs",
        own_series: "local",
    }
    assert not any(t.started for t in tasks)
    results = [t.start() for t in tasks]
    assert {r.result(timeout=30)[TAG][0] for r in results} == {"pacs", "local"}
    store = h.metadata_store
    for uid, task in by_series.items():
        series = store.get_series(spec.study_uid, uid)
        assert series[TAG][0] == task.metadata[TAG][0] and series["instances"]
    assert len(store.get_series(spec.study_uid, spec.series_uid(0))["instances"]) == spec.n_instances
    ds.helpers.close()
