"""What an export reads from a source: studies, series, one series' metadata at a time, frames, bulk data.

Works with any source on the interface: the metadata goes through ``retrieve.series.metadata``
into the host's store one series at a time and is dropped from it (and from the source's
cache) before the next, so a study is never held whole.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import NotFoundError
from ..gateway.frames import call_bulk_data_uri, source_frames

__all__ = ["SourceReader"]


def _number(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


class SourceReader:
    """One data source of a host, read the way an export needs it."""

    def __init__(self, host: Any, data_source: Any) -> None:
        self.host = host
        self.data_source = data_source
        self.name = str(getattr(data_source, "name", None) or "source")
        self._store_lock = threading.Lock()

    def studies(self, filters: Mapping[str, Any] | None, uids: Sequence[str] | None) -> list[dict[str, Any]]:
        """The study rows to export: the QIDO filters, narrowed to ``uids`` when given (all must exist)."""
        params = dict(filters or {})
        if uids:
            params["StudyInstanceUID"] = "\\".join(uids)
        rows = [dict(r) for r in self.data_source.query.studies.search(params) if r.get("StudyInstanceUID")]
        if uids:
            found = {r["StudyInstanceUID"] for r in rows}
            missing = [u for u in uids if u not in found]
            if missing:
                raise NotFoundError(f"studies {missing} are not in data source {self.name!r}")
        seen: set[str] = set()
        unique = []
        for row in rows:  # a merge source may list a study twice
            if row["StudyInstanceUID"] not in seen:
                seen.add(row["StudyInstanceUID"])
                unique.append(row)
        return unique

    def series_rows(self, study: str) -> list[dict[str, Any]]:
        rows = [dict(r) for r in self.data_source.query.series.search(study) if r.get("SeriesInstanceUID")]
        return sorted(rows, key=lambda r: (_number(r.get("SeriesNumber")), str(r["SeriesInstanceUID"])))

    def instances(self, study: str, series: str) -> list[dict[str, Any]]:
        """One series' instances, naturalized, in InstanceNumber order (the store holds them until ``forget``)."""
        self.forget(study)
        self.data_source.retrieve.series.metadata(study, series_instance_uids=[series])
        record = self.host.metadata_store.get_series(study, series)
        if record is None:
            raise NotFoundError(f"series {series!r} of study {study!r} gave no metadata in {self.name!r}")
        found = [i for i in record.get("instances", ()) if i.get("SOPInstanceUID")]
        return sorted(found, key=lambda i: (_number(i.get("InstanceNumber")), str(i["SOPInstanceUID"])))

    def forget(self, study: str) -> None:
        """Drop a study from the store and the source's cache: memory stays one series deep."""
        with self._store_lock:
            self.data_source.delete_study_metadata(study)
            self.host.metadata_store.remove_study(study)

    def frames(
        self, study: str, series: str, sop: str, numbers: Sequence[int], instance: Mapping[str, Any]
    ) -> list[bytes]:
        return source_frames(self.data_source, study, series, sop, list(numbers), lambda: instance)

    def bulk(self, uri: str, keyword: str, study: str, series: str) -> bytes:
        return call_bulk_data_uri(
            self.data_source, uri, tag=keyword, study_instance_uid=study, series_instance_uid=series
        )
