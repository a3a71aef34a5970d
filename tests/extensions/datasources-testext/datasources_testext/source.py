"""An in-memory data source: studies given in the configuration, stores kept in a list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datasources.interface import IWebApiDataSource, not_supported
from datasources.matching import filter_records
from datasources.query import parse_search
from datasources.results import InstanceOutcome, StoreResult

import datasources_testext

datasources_testext.SOURCE_IMPORTED = True


def create_memory_api(configuration: Mapping[str, Any], host: Any = None) -> Any:
    studies = [dict(s) for s in configuration.get("studies", [])]
    stored: list[Any] = []
    calls: list[tuple[str, Any]] = []

    def initialize(params: Any = None, query: Any = None) -> None:
        calls.append(("initialize", dict(query or {})))

    def search_studies(filters: Any = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        return filter_records(studies, parse_search("study", filters, **kwargs))

    def empty(*args: Any, **kwargs: Any) -> list[Any]:
        return []

    def store_dicom(datasets: Any, **kwargs: Any) -> StoreResult:
        items = datasets if isinstance(datasets, list) else [datasets]
        stored.extend(items)
        return StoreResult([InstanceOutcome("stored", getattr(d, "SOPInstanceUID", None)) for d in items])

    return IWebApiDataSource.create(
        initialize=initialize,
        query={"studies": {"search": search_studies}, "series": {"search": empty}, "instances": {"search": empty}},
        retrieve={
            "series": {"metadata": lambda study_instance_uid, **kw: {}},
            "direct_url": not_supported("retrieve.direct_url"),
            "bulk_data_uri": not_supported("retrieve.bulk_data_uri"),
        },
        store={"dicom": store_dicom},
        reject={"series": not_supported("reject.series", "memory source keeps no series")},
        get_image_ids_for_display_set=lambda display_set: [],
        get_image_ids_for_instance=lambda instance, frame=None: f"memory:{instance['SOPInstanceUID']}",
        get_config=lambda: dict(configuration),
        get_study_instance_uids=lambda params=None, query=None: [s["StudyInstanceUID"] for s in studies],
        delete_study_metadata=lambda uid: None,
        helpers={"stored": lambda: list(stored), "calls": lambda: list(calls)},
    )
