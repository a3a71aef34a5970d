"""An in-memory data source: studies given in the configuration, stores kept in a list.

A study may hold ``series``, each with ``instances`` (naturalized dicts): then the source
searches and retrieves them as any other does, and passes the conformance kit
(docs/plugin-authors.md runs it on this source).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datasources import IWebApiDataSource, Source
from datasources.errors import NotFoundError
from datasources.matching import filter_records
from datasources.query import parse_search
from datasources.results import InstanceOutcome, StoreResult
from datasources.values import conform

import datasources_testext

datasources_testext.SOURCE_IMPORTED = True


class MemorySource(Source):
    """Studies from the configuration; ``store.dicom`` keeps what it is given in a list."""

    HELPERS = ("stored", "calls")
    READ_ONLY_REASON = "memory source keeps no series"

    def __init__(self, configuration: Mapping[str, Any], host: Any = None) -> None:
        super().__init__(configuration, host)
        self._studies = [conform(dict(s)) for s in configuration.get("studies", [])]
        self._stored: list[Any] = []
        self._calls: list[tuple[str, Any]] = []

    # -- helpers ---------------------------------------------------------------------------
    def stored(self) -> list[Any]:
        return list(self._stored)

    def calls(self) -> list[tuple[str, Any]]:
        return list(self._calls)

    # -- records ---------------------------------------------------------------------------
    def _study(self, uid: str) -> dict[str, Any]:
        for study in self._studies:
            if study.get("StudyInstanceUID") == uid:
                return study
        raise NotFoundError(f"memory: no study {uid!r}")

    def _series(self, study_uid: str) -> list[dict[str, Any]]:
        return [s for s in self._study(study_uid).get("series") or [] if isinstance(s, Mapping)]

    def _instances(self, study_uid: str, series: Mapping[str, Any]) -> list[dict[str, Any]]:
        out = []
        for inst in series.get("instances") or []:
            record = {**conform(inst), "StudyInstanceUID": study_uid, "SeriesInstanceUID": series["SeriesInstanceUID"]}
            record["imageId"] = f"memory:{record['SOPInstanceUID']}"
            out.append(record)
        return out

    def _study_row(self, study: Mapping[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in study.items() if k != "series"}
        series = [s for s in study.get("series") or [] if isinstance(s, Mapping)]
        if series:
            modalities = [m for m in dict.fromkeys(s.get("Modality") for s in series) if m]
            row.setdefault("ModalitiesInStudy", modalities or None)
            row.setdefault("NumberOfStudyRelatedSeries", len(series))
            row.setdefault("NumberOfStudyRelatedInstances", sum(len(s.get("instances") or []) for s in series))
        return row

    def _series_row(self, study_uid: str, series: Mapping[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in series.items() if k != "instances"}
        row["StudyInstanceUID"] = study_uid
        row.setdefault("NumberOfSeriesRelatedInstances", len(series.get("instances") or []))
        return row

    # -- the interface ---------------------------------------------------------------------
    def initialize(self, params: Any = None, query: Any = None) -> list[str]:
        self._calls.append(("initialize", dict(query or {})))
        return []

    def search_studies(self, filters: Any = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        return filter_records([self._study_row(s) for s in self._studies], parse_search("study", filters, **kwargs))

    def search_series(self, study_uid: str | None = None, filters: Any = None, /, **kwargs: Any) -> list[dict]:
        if study_uid is None:
            return []
        try:
            rows = [self._series_row(study_uid, s) for s in self._series(study_uid)]
        except NotFoundError:
            return []
        return filter_records(rows, parse_search("series", filters, **kwargs))

    def search_instances(
        self, study_uid: str | None = None, series_uid: str | None = None, filters: Any = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        if study_uid is None:
            return []
        try:
            series = self._series(study_uid)
        except NotFoundError:
            return []
        rows = [
            i for s in series if series_uid in (None, s["SeriesInstanceUID"]) for i in self._instances(study_uid, s)
        ]
        return filter_records(rows, parse_search("instance", filters, **kwargs))

    def series_metadata(self, study_uid: str, *, series_instance_uids: Sequence[str] | None = None, **_: Any) -> dict:
        study = self._study(study_uid)
        wanted = set(series_instance_uids or ())
        series = [s for s in self._series(study_uid) if not wanted or s["SeriesInstanceUID"] in wanted]
        summaries = {s["SeriesInstanceUID"]: self._series_row(study_uid, s) for s in series}
        if self.host is not None:
            store = self.host.metadata_store
            store.add_study(self._study_row(study))
            if summaries:
                store.add_series_metadata(list(summaries.values()))
            for s in series:
                instances = self._instances(study_uid, s)
                if instances:
                    store.add_instances(instances)
            store.set_study_loaded(study_uid)
        return summaries

    def store_dicom(self, datasets: Any, **kwargs: Any) -> StoreResult:
        items = datasets if isinstance(datasets, list) else [datasets]
        self._stored.extend(items)
        return StoreResult([InstanceOutcome("stored", getattr(d, "SOPInstanceUID", None)) for d in items])

    def get_image_ids_for_instance(self, instance: Mapping[str, Any], frame: int | None = None) -> str:
        image_id = f"memory:{instance['SOPInstanceUID']}"
        return image_id if frame is None else f"{image_id}?frame={frame}"

    def get_study_instance_uids(self, params: Any = None, query: Any = None) -> list[str]:
        return [s["StudyInstanceUID"] for s in self._studies]


def create_memory_api(configuration: Mapping[str, Any], host: Any = None) -> Any:
    return IWebApiDataSource.from_source(MemorySource(configuration, host))
