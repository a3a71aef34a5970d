"""An in-memory data source: studies given in the configuration, stores kept in a list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datasources import Source
from datasources.interface import IWebApiDataSource
from datasources.matching import filter_records
from datasources.query import parse_search
from datasources.results import InstanceOutcome, StoreResult

import datasources_testext

datasources_testext.SOURCE_IMPORTED = True


class MemorySource(Source):
    """Studies from the configuration; stored datasets and initialize calls kept for tests."""

    HELPERS = ("stored", "calls")
    READ_ONLY_REASON = "memory source keeps no series"

    def __init__(self, configuration: Mapping[str, Any] | None = None, host: Any = None) -> None:
        super().__init__(configuration, host)
        self.studies = [dict(s) for s in self.configuration.get("studies", [])]
        self._stored: list[Any] = []
        self._calls: list[tuple[str, Any]] = []

    def initialize(self, params: Any = None, query: Any = None) -> None:
        self._calls.append(("initialize", dict(query or {})))

    def search_studies(self, filters: Any = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        return filter_records(self.studies, parse_search("study", filters, **kwargs))

    def search_series(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def search_instances(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def series_metadata(self, study_instance_uid: str, **kwargs: Any) -> dict[str, Any]:
        return {}

    def store_dicom(self, datasets: Any, **kwargs: Any) -> StoreResult:
        items = datasets if isinstance(datasets, list) else [datasets]
        self._stored.extend(items)
        return StoreResult([InstanceOutcome("stored", getattr(d, "SOPInstanceUID", None)) for d in items])

    def get_image_ids_for_display_set(self, display_set: Any) -> list[str]:
        return []

    def get_image_ids_for_instance(self, instance: Mapping[str, Any], frame: int | None = None) -> str:
        return f"memory:{instance['SOPInstanceUID']}"

    def get_study_instance_uids(self, params: Any = None, query: Any = None) -> list[str]:
        return [s["StudyInstanceUID"] for s in self.studies]

    def delete_study_metadata(self, study_instance_uid: str) -> None:
        """Nothing cached: the studies live in the configuration."""

    def stored(self) -> list[Any]:
        return list(self._stored)

    def calls(self) -> list[tuple[str, Any]]:
        return list(self._calls)


def create_memory_api(configuration: Mapping[str, Any], host: Any = None) -> Any:
    return IWebApiDataSource.from_source(MemorySource(configuration, host))
