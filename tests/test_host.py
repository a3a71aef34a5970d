"""Routing: sources by name, the active source and its event, run-time changes, lazy initialize."""

from __future__ import annotations

import threading
import types
from typing import Any

import pytest
from datasources import Host, IWebApiDataSource, hookimpl, not_supported
from datasources.errors import (
    ConfigurationError,
    DataSourceUnavailableError,
    UnknownDataSourceError,
    UnknownNamespaceError,
)

MEMORY = "testext.dataSourcesModule.memory"


def memory(name: str, studies: list[dict[str, Any]] | None = None, **conf: Any) -> dict[str, Any]:
    return {"namespace": MEMORY, "sourceName": name, "configuration": {"studies": studies or [], **conf}}


def three_sources() -> Host:
    return Host.from_config(
        {
            "defaultDataSourceName": "b",
            "dataSources": [
                memory("a", [{"StudyInstanceUID": "1.1"}], friendlyName="Server A"),
                memory("b", [{"StudyInstanceUID": "2.1"}]),
                memory("c", [{"StudyInstanceUID": "3.1"}]),
            ],
        }
    )


def test_several_sources_share_one_namespace_and_route_by_name() -> None:
    host = three_sources()
    for name, uid in (("a", "1.1"), ("b", "2.1"), ("c", "3.1")):
        assert [s["StudyInstanceUID"] for s in host.get_data_source(name).query.studies.search()] == [uid]
    assert host.active_data_source is host.get_data_source("b")
    infos = {i.source_name: i for i in host.data_sources}
    assert infos["a"].friendly_name == "Server A"
    assert infos["c"].friendly_name == "c"
    assert infos["b"].active and not infos["a"].active
    assert all(i.type == "other" for i in infos.values())


def test_unknown_source_lists_known_ones() -> None:
    host = three_sources()
    with pytest.raises(UnknownDataSourceError) as info:
        host.get_data_source("zzz")
    assert str(info.value) == "no data source named 'zzz'; configured sources: 'a', 'b', 'c'"
    with pytest.raises(UnknownDataSourceError):
        host.set_active_data_source("zzz")


def test_unknown_namespace_lists_known_ones() -> None:
    with pytest.raises(UnknownNamespaceError) as info:
        Host.from_config({"dataSources": [{"namespace": "nope.dataSourcesModule.x", "sourceName": "x"}]})
    assert "'default.dataSourcesModule.dicomjson'" in str(info.value)
    assert MEMORY in str(info.value)


def test_ohif_namespace_works_as_is() -> None:
    host = Host.from_config(
        {
            "dataSources": [
                {
                    "namespace": "@ohif/extension-default.dataSourcesModule.dicomjson",
                    "sourceName": "dicomjson",
                    "configuration": {"bundled": "sample"},
                }
            ]
        }
    )
    assert host.get_data_source("dicomjson").query.studies.search()


def test_set_active_publishes_event_once() -> None:
    host = three_sources()
    seen: list[Any] = []
    sub = host.subscribe(host.EVENTS.ACTIVE_DATA_SOURCE_CHANGED, seen.append)
    host.set_active_data_source("a")
    host.set_active_data_source("a")  # no change, no event
    assert [e.source_name for e in seen] == ["a"]
    assert host.active_data_source_name == "a"
    sub.unsubscribe()
    host.set_active_data_source("c")
    assert len(seen) == 1


def test_add_data_source_at_run_time() -> None:
    host = three_sources()
    seen: list[Any] = []
    host.subscribe(host.EVENTS.ACTIVE_DATA_SOURCE_CHANGED, seen.append)
    ds = host.add_data_source(memory("d", [{"StudyInstanceUID": "4.1"}]), activate=True)
    assert host.active_data_source is ds
    assert [e.source_name for e in seen] == ["d"]
    with pytest.raises(ConfigurationError, match="already exists"):
        host.add_data_source(memory("d"))


def test_update_configuration_recreates_the_source() -> None:
    host = three_sources()
    old = host.get_data_source("b")
    old.query.studies.search()
    seen: list[Any] = []
    host.subscribe(host.EVENTS.ACTIVE_DATA_SOURCE_CHANGED, seen.append)
    new = host.update_data_source_configuration("b", {"studies": [{"StudyInstanceUID": "9.9"}]})
    assert new is not old
    assert not {i.source_name: i for i in host.data_sources}["b"].initialized
    assert [s["StudyInstanceUID"] for s in new.query.studies.search()] == ["9.9"]
    assert [e.source_name for e in seen] == ["b"]  # it is the active one
    with pytest.raises(UnknownDataSourceError):
        host.update_data_source_configuration("nope", {})


def test_initialize_runs_once_lazily_and_again_when_asked() -> None:
    host = three_sources()
    ds = host.get_data_source("a")
    assert not {i.source_name: i for i in host.data_sources}["a"].initialized  # created, not initialized
    ds.query.studies.search()
    ds.query.studies.search()
    assert ds.helpers.calls() == [("initialize", {})]
    host.initialize_data_source("a", params={"StudyInstanceUIDs": "1.1"}, query={"url": "x"})
    assert ds.helpers.calls() == [("initialize", {}), ("initialize", {"url": "x"})]


def test_lazy_initialize_is_once_under_threads() -> None:
    host = three_sources()
    ds = host.get_data_source("c")
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        ds.query.studies.search()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ds.helpers.calls() == [("initialize", {})]


def test_on_configuration_rewrites_at_initialize() -> None:
    def on_configuration(configuration: dict[str, Any], route: dict[str, Any]) -> dict[str, Any]:
        uid = route["query"].get("study", "0.0")
        return {**configuration, "studies": [{"StudyInstanceUID": uid}]}

    host = Host.from_config({"dataSources": [memory("dyn", onConfiguration=on_configuration)]})
    host.initialize_data_source("dyn", query={"study": "7.7"})
    assert [s["StudyInstanceUID"] for s in host.get_data_source("dyn").query.studies.search()] == ["7.7"]


def test_factory_taking_only_the_configuration() -> None:
    def create(configuration: dict[str, Any]) -> Any:
        return IWebApiDataSource.create(
            initialize=lambda params=None, query=None: None,
            query={
                "studies": {"search": lambda *a, **k: [dict(configuration)]},
                "series": {"search": list},
                "instances": {"search": list},
            },
            retrieve={
                "series": {"metadata": dict},
                "direct_url": not_supported("x"),
                "bulk_data_uri": not_supported("y"),
            },
            store={"dicom": not_supported("store.dicom")},
            reject={"series": not_supported("reject.series")},
            get_image_ids_for_display_set=list,
            get_image_ids_for_instance=str,
            get_config=dict,
            get_study_instance_uids=list,
            delete_study_metadata=print,
        )

    ext = types.ModuleType("one")
    ext.getDataSourcesModule = hookimpl(lambda: [{"name": "one", "type": "other", "createDataSource": create}])
    host = Host(
        {"dataSources": [{"namespace": "one.dataSourcesModule.one", "sourceName": "o", "configuration": {"k": 1}}]},
        extensions={"one": ext},
    )
    assert host.get_data_source("o").query.studies.search() == [{"k": 1}]


def test_factory_that_crashes_leaves_other_sources_working() -> None:
    def create(configuration: Any, host: Any) -> Any:
        raise RuntimeError("SDK not configured")

    ext = types.ModuleType("crash")
    ext.getDataSourcesModule = hookimpl(lambda: [{"name": "c", "type": "other", "createDataSource": create}])
    config = {"dataSources": [memory("good"), {"namespace": "crash.dataSourcesModule.c", "sourceName": "bad"}]}
    host = Host(config, extensions={"crash": ext})
    assert host.get_data_source("good").query.studies.search() == []
    with pytest.raises(DataSourceUnavailableError, match="SDK not configured"):
        host.get_data_source("bad")
    assert {i.source_name: i.error for i in host.data_sources}["bad"]
    with pytest.raises(DataSourceUnavailableError):
        Host(config, extensions={"crash": ext}, strict=True)


def test_factory_returning_the_wrong_type() -> None:
    ext = types.ModuleType("wrong")
    ext.getDataSourcesModule = hookimpl(
        lambda: [{"name": "w", "type": "other", "createDataSource": lambda c, h: {"query": {}}}]
    )
    host = Host(
        {"dataSources": [{"namespace": "wrong.dataSourcesModule.w", "sourceName": "w"}]}, extensions={"wrong": ext}
    )
    with pytest.raises(DataSourceUnavailableError, match=r"IWebApiDataSource\.create"):
        host.get_data_source("w")


def test_no_configuration_is_the_bundled_sample() -> None:
    host = Host()
    assert host.active_data_source_name == "sample"
    assert len(host.active_data_source.query.studies.search()) == 6
    assert "sample" in repr(host)
    assert "sample" in repr(host.active_data_source)
