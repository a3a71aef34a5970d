"""The one way to write a source: ``Source`` subclasses and ``IWebApiDataSource.from_source``."""

from __future__ import annotations

from typing import Any

import pytest
from datasources import DicomMetadataStore, IWebApiDataSource, Source
from datasources.errors import InterfaceError, NotSupportedError


class _Host:
    def __init__(self) -> None:
        self.metadata_store = DicomMetadataStore()


class Listing(Source):
    HELPERS = ("count",)
    READ_ONLY_REASON = "a listing is read-only"

    def search_studies(self, query: Any = None, **filters: Any) -> list[dict[str, Any]]:
        return [{"StudyInstanceUID": "1.2.3"}]

    def count(self) -> int:
        return 1


def test_methods_become_members_and_the_rest_not_supported() -> None:
    ds = IWebApiDataSource.from_source(Listing({"k": "v"}))
    assert ds.query.studies.search() == [{"StudyInstanceUID": "1.2.3"}]
    assert ds.helpers.count() == 1
    assert ds.get_config() == {"k": "v"}
    with pytest.raises(NotSupportedError, match="read-only"):
        ds.store.dicom([])
    with pytest.raises(NotSupportedError):
        ds.query.series.search("1.2.3")
    assert "frames" not in ds.retrieve


def test_study_uids_from_route_and_initialize() -> None:
    ds = IWebApiDataSource.from_source(Listing())
    assert ds.get_study_instance_uids({"StudyInstanceUIDs": "a"}, {"StudyInstanceUIDs": "b, c"}) == ["b", "c"]
    assert ds.initialize({"StudyInstanceUIDs": "a"}) == ["a"]
    assert ds.get_study_instance_uids() == []


def test_delete_study_metadata_goes_through_the_hosts_store() -> None:
    host = _Host()
    host.metadata_store.add_instances([{"StudyInstanceUID": "1", "SeriesInstanceUID": "2", "SOPInstanceUID": "3"}])
    assert host.metadata_store.get_study("1") is not None
    IWebApiDataSource.from_source(Listing(host=host)).delete_study_metadata("1")
    assert host.metadata_store.get_study("1") is None


def test_image_ids_from_the_instances_frame_numbering_per_source() -> None:
    class Local(Listing):
        FIRST_FRAME = 0

    instances = [{"imageId": "x:1"}, {"imageId": "x:2", "NumberOfFrames": 2}]
    assert IWebApiDataSource.from_source(Listing()).get_image_ids_for_display_set(instances) == [
        "x:1",
        "x:2?frame=1",
        "x:2?frame=2",
    ]
    assert IWebApiDataSource.from_source(Local()).get_image_ids_for_display_set(instances)[1:] == [
        "x:2?frame=0",
        "x:2?frame=1",
    ]


def test_a_plain_object_gets_the_same_defaults() -> None:
    class Plain:
        def search_studies(self, query: Any = None, **filters: Any) -> list[dict[str, Any]]:
            return []

    ds = IWebApiDataSource.from_source(Plain(), helpers={"ping": lambda: "pong"})
    assert ds.initialize() == []
    assert ds.get_config() == {}
    assert ds.helpers.ping() == "pong"


def test_a_method_that_is_not_callable_is_an_interface_error() -> None:
    class Broken(Source):
        search_studies = "not a function"

    with pytest.raises(InterfaceError, match=r"query\.studies\.search"):
        IWebApiDataSource.from_source(Broken())


def test_a_route_naming_no_study_gives_the_studies_the_source_holds() -> None:
    class Held(Listing):
        def held_study_uids(self) -> list[str]:
            return ["1.2.3", "4.5.6"]

    ds = IWebApiDataSource.from_source(Held())
    assert ds.get_study_instance_uids() == ["1.2.3", "4.5.6"]
    assert ds.get_study_instance_uids({"StudyInstanceUIDs": "4.5.6"}) == ["4.5.6"]
    assert ds.initialize() == ["1.2.3", "4.5.6"]
    assert IWebApiDataSource.from_source(Listing()).get_study_instance_uids() == []


def test_a_source_knows_the_data_source_built_from_it() -> None:
    source = Listing()
    assert source.data_source is None
    ds = IWebApiDataSource.from_source(source)
    assert source.data_source is ds
    ds.name = "registered"
    assert source.data_source.name == "registered"
