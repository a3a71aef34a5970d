"""IWebApiDataSource.create: validation, OHIF shapes, helpers, NotSupportedError, no silent None."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from datasources.errors import HelperNotFoundError, InterfaceError, NotSupportedError
from datasources.interface import MEMBERS, IWebApiDataSource, not_supported


def members(**overrides: Any) -> dict[str, Any]:
    def rows(*a: Any, **k: Any) -> list[Any]:
        return [{"called": a, "kw": k}]

    base: dict[str, Any] = {
        "initialize": lambda params=None, query=None: None,
        "query": {"studies": {"search": rows}, "series": {"search": rows}, "instances": {"search": rows}},
        "retrieve": {
            "series": {"metadata": lambda uid, **kw: {}},
            "direct_url": lambda **kw: "http://x",
            "bulk_data_uri": lambda uri, **kw: b"",
        },
        "store": {"dicom": not_supported("store.dicom")},
        "reject": {"series": not_supported("reject.series", "read-only")},
        "get_image_ids_for_display_set": lambda ds: [],
        "get_image_ids_for_instance": lambda inst, frame=None: "id",
        "get_config": lambda: {},
        "get_study_instance_uids": lambda params=None, query=None: [],
        "delete_study_metadata": lambda uid: None,
    }
    base.update(overrides)
    return base


def test_complete_implementation_gives_attribute_access() -> None:
    ds = IWebApiDataSource.create(**members())
    assert ds.query.studies.search(PatientName="DOE*") == [{"called": (), "kw": {"PatientName": "DOE*"}}]
    assert ds.retrieve.direct_url() == "http://x"
    assert ds.get_image_ids_for_instance({}) == "id"


@pytest.mark.parametrize("path", MEMBERS)
def test_each_missing_member_is_named(path: str) -> None:
    impl = members()
    head, _, rest = path.partition(".")
    if not rest:
        del impl[head]
    else:
        node = impl[head]
        parts = rest.split(".")
        for part in parts[:-1]:
            node[part] = dict(node[part])
            node = node[part]
        del node[parts[-1]]
    with pytest.raises(InterfaceError) as info:
        IWebApiDataSource.create(**impl)
    assert path in str(info.value)
    assert "missing" in str(info.value)


def test_all_missing_members_listed_at_once() -> None:
    with pytest.raises(InterfaceError) as info:
        IWebApiDataSource.create(initialize=lambda **k: None)
    for path in MEMBERS[1:]:
        assert path in str(info.value)


def test_not_callable_member_is_an_error() -> None:
    impl = members(get_config={"not": "callable"})
    with pytest.raises(InterfaceError, match="get_config"):
        IWebApiDataSource.create(**impl)


def test_ohif_camel_case_and_object_shapes() -> None:
    impl = members()
    ids = impl.pop("get_image_ids_for_display_set")
    impl["getImageIdsForDisplaySet"] = ids
    impl["deleteStudyMetadataPromise"] = impl.pop("delete_study_metadata")
    impl["retrieve"] = SimpleNamespace(
        series=SimpleNamespace(metadata=lambda uid, **kw: {"x": 1}),
        directURL=lambda **kw: "u",
        bulkDataURI=lambda uri, **kw: b"b",
    )
    ds = IWebApiDataSource.create(impl)  # one mapping, as OHIF's implementation object
    assert ds.retrieve.series.metadata("1") == {"x": 1}
    assert ds.retrieve.direct_url() == "u"
    assert ds.retrieve.bulk_data_uri("x") == b"b"
    assert callable(ds.delete_study_metadata)


def test_extra_members_become_helpers_and_missing_helper_lists_known() -> None:
    ds = IWebApiDataSource.create(**members(reload=lambda: "reloaded"), helpers={"ping": lambda: "pong"})
    assert ds.helpers.reload() == "reloaded"
    assert ds.helpers.ping() == "pong"
    with pytest.raises(HelperNotFoundError) as info:
        ds.helpers.nope  # noqa: B018
    assert "ping" in str(info.value) and "reload" in str(info.value)
    assert isinstance(info.value, AttributeError)


def test_extra_namespace_members_are_kept() -> None:
    impl = members()
    impl["retrieve"] = dict(impl["retrieve"], frames=lambda *a: [b"f"])
    ds = IWebApiDataSource.create(**impl)
    assert "frames" in ds.retrieve
    assert ds.retrieve.frames("s", "e", "i", [1]) == [b"f"]


def test_not_supported_raises_typed_error_with_source_name() -> None:
    ds = IWebApiDataSource.create(**members())
    ds.name = "pacs"
    with pytest.raises(NotSupportedError) as info:
        ds.reject.series("1", "2")
    assert info.value.source == "pacs"
    assert "reject.series" in str(info.value) and "read-only" in str(info.value)
    assert isinstance(info.value, NotImplementedError)


def test_member_returning_none_is_an_interface_error() -> None:
    ds = IWebApiDataSource.create(**members(get_config=lambda: None))
    with pytest.raises(InterfaceError, match="get_config"):
        ds.get_config()


def test_guard_runs_before_members_except_initialize_and_get_config() -> None:
    ds = IWebApiDataSource.create(**members())
    seen: list[str] = []
    ds._guard = seen.append
    ds.initialize()
    ds.get_config()
    ds.query.series.search("1")
    ds.get_image_ids_for_instance({})
    assert seen == ["query.series.search", "get_image_ids_for_instance"]


def test_namespace_is_read_only_and_lists_members() -> None:
    ds = IWebApiDataSource.create(**members())
    with pytest.raises(AttributeError, match=r"studies, series, instances|instances, series, studies"):
        ds.query.patients  # noqa: B018
    with pytest.raises(AttributeError):
        ds.query.studies = None  # type: ignore[misc]


def test_non_callable_extra_member_is_rejected() -> None:
    with pytest.raises(InterfaceError, match="color"):
        IWebApiDataSource.create(**members(color="blue"))
