"""DicomMetadataStore: the one place study/series/instance metadata lives, as in OHIF.

OHIF's API in PEP 8, plus what a long-running Python process needs (``remove_study``,
``clear``) and what OHIF only declares (``STUDY_ADDED`` is really sent).

Thread safety: writers take one lock; look-ups are O(1) dict reads. Lists held by studies
(``series``) and series (``instances``) are replaced, never mutated, so a reader iterating one
is never disturbed by a writer. Events are sent after the lock is released. The mappings
returned are the store's own: treat them as read-only and change them through the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import DatasetError
from .events import PubSub

__all__ = ["DicomMetadataStore"]

_STUDY_SHELL_FIELDS = (
    "PatientID",
    "PatientName",
    "StudyDate",
    "StudyTime",
    "ModalitiesInStudy",
    "StudyDescription",
    "AccessionNumber",
    "NumInstances",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


def _frameless(image_id: str) -> str:
    """An image id without its frame part (``.../frames/3``, ``...?frame=2``), else itself."""
    for marker in ("/frames/", "?frame=", "&frame="):
        head, sep, tail = image_id.rpartition(marker)
        if sep and tail.isdigit():
            return head
    return image_id


def _require_uid(record: Mapping[str, Any], key: str, what: str) -> str:
    if not isinstance(record, Mapping):
        raise DatasetError(f"{what} must be a mapping, not {type(record).__name__}")
    uid = record.get(key)
    if not isinstance(uid, str) or not uid:
        raise DatasetError(f"{what} has no {key}")
    return uid


def _modalities(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [m for m in value.replace(",", "\\").split("\\") if m]
    return [str(m) for m in value if m]


class DicomMetadataStore(PubSub):
    """Studies -> series -> instances, naturalized, indexed for O(1) look-ups."""

    EVENTS = PubSub.make_events(
        STUDY_ADDED="event::dicomMetadataStore:studyAdded",
        INSTANCES_ADDED="event::dicomMetadataStore:instancesAdded",
        SERIES_ADDED="event::dicomMetadataStore:seriesAdded",
        SERIES_UPDATED="event::dicomMetadataStore:seriesUpdated",
        STUDY_REMOVED="event::dicomMetadataStore:studyRemoved",
    )

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._studies: dict[str, dict[str, Any]] = {}
        self._series: dict[tuple[str, str], dict[str, Any]] = {}
        self._series_by_uid: dict[str, dict[str, Any]] = {}
        self._instances: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._by_image_id: dict[str, dict[str, Any]] = {}

    # -- internal (lock held) ---------------------------------------------------------------

    def _ensure_study(self, uid: str, source: Mapping[str, Any], events: list[tuple[str, Any]]) -> dict[str, Any]:
        study = self._studies.get(uid)
        if study is None:
            study = {"StudyInstanceUID": uid}
            for key in _STUDY_SHELL_FIELDS:
                if source.get(key) is not None:
                    study[key] = source[key]
            study["ModalitiesInStudy"] = _modalities(source.get("ModalitiesInStudy"))
            study.setdefault("StudyDescription", source.get("StudyDescription"))
            study["isLoaded"] = False
            study["series"] = []
            self._studies[uid] = study
            events.append((self.EVENTS.STUDY_ADDED, {"StudyInstanceUID": uid}))
        return study

    def _ensure_series(self, study: dict[str, Any], series_uid: str) -> dict[str, Any]:
        key = (study["StudyInstanceUID"], series_uid)
        series = self._series.get(key)
        if series is None:
            series = {
                "SeriesInstanceUID": series_uid,
                "StudyInstanceUID": study["StudyInstanceUID"],
                "instances": [],
            }
            self._series[key] = series
            self._series_by_uid[series_uid] = series
            self._instances[key] = {}
            study["series"] = [*study["series"], series]
        return series

    def _add_modality(self, study: dict[str, Any], modality: Any) -> None:
        if isinstance(modality, str) and modality and modality not in study["ModalitiesInStudy"]:
            study["ModalitiesInStudy"] = [*study["ModalitiesInStudy"], modality]

    def _index_image_ids(self, instance: dict[str, Any]) -> None:
        for key in ("imageId", "url"):
            image_id = instance.get(key)
            if isinstance(image_id, str) and image_id:
                self._by_image_id[image_id] = instance
                base = _frameless(image_id)
                if base != image_id:
                    self._by_image_id.setdefault(base, instance)

    def _unindex_image_ids(self, instance: Mapping[str, Any]) -> None:
        for key in ("imageId", "url"):
            image_id = instance.get(key)
            if isinstance(image_id, str):
                for candidate in (image_id, _frameless(image_id)):
                    if self._by_image_id.get(candidate) is instance:
                        del self._by_image_id[candidate]

    def _emit(self, events: list[tuple[str, Any]]) -> None:
        for event, payload in events:
            self._broadcast_event(event, payload)

    # -- writers ----------------------------------------------------------------------------

    def add_instances(self, instances: Sequence[Mapping[str, Any]], made_in_client: bool = False) -> None:
        """Add the instances of ONE series (all or nothing); duplicates by SOPInstanceUID are kept once.

        Sends ``INSTANCES_ADDED`` even if every instance was already there, as OHIF does.
        """
        if not instances:
            return
        first = instances[0]
        study_uid = _require_uid(first, "StudyInstanceUID", "instance 0")
        series_uid = _require_uid(first, "SeriesInstanceUID", "instance 0")
        prepared: list[dict[str, Any]] = []
        for i, instance in enumerate(instances):
            _require_uid(instance, "SOPInstanceUID", f"instance {i}")
            if instance.get("StudyInstanceUID") != study_uid or instance.get("SeriesInstanceUID") != series_uid:
                raise DatasetError(
                    f"add_instances takes the instances of one series; instance {i} belongs to "
                    f"{instance.get('StudyInstanceUID')!r}/{instance.get('SeriesInstanceUID')!r}, "
                    f"instance 0 to {study_uid!r}/{series_uid!r}"
                )
            prepared.append(dict(instance))
        events: list[tuple[str, Any]] = []
        with self._lock:
            study = self._ensure_study(study_uid, first, events)
            series = self._ensure_series(study, series_uid)
            by_sop = self._instances[(study_uid, series_uid)]
            added: list[dict[str, Any]] = []
            for instance in prepared:
                sop = instance["SOPInstanceUID"]
                if sop in by_sop:
                    continue
                by_sop[sop] = instance
                added.append(instance)
                self._index_image_ids(instance)
            if added:
                series["instances"] = [*series["instances"], *added]
                for key in ("Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime"):
                    if key not in series and first.get(key) is not None:
                        series[key] = first[key]
                self._add_modality(study, first.get("Modality"))
                if not study.get("StudyDescription") and first.get("StudyDescription"):
                    study["StudyDescription"] = first["StudyDescription"]
            events.append(
                (
                    self.EVENTS.INSTANCES_ADDED,
                    {
                        "StudyInstanceUID": study_uid,
                        "SeriesInstanceUID": series_uid,
                        "madeInClient": made_in_client,
                    },
                )
            )
        self._emit(events)

    def add_series_metadata(self, summaries: Sequence[Mapping[str, Any]], made_in_client: bool = False) -> None:
        """Series summaries (QIDO rows or the like); creates studies and series as needed."""
        if not summaries:
            return
        checked = []
        for i, summary in enumerate(summaries):
            study_uid = _require_uid(summary, "StudyInstanceUID", f"series summary {i}")
            _require_uid(summary, "SeriesInstanceUID", f"series summary {i}")
            checked.append((study_uid, {k: v for k, v in summary.items() if k != "instances"}))
        events: list[tuple[str, Any]] = []
        by_study: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for study_uid, summary in checked:
                study = self._ensure_study(study_uid, summary, events)
                series = self._ensure_series(study, summary["SeriesInstanceUID"])
                series.update(summary)
                self._add_modality(study, summary.get("Modality"))
                by_study.setdefault(study_uid, []).append(summary)
            for study_uid, study_summaries in by_study.items():
                study = self._studies[study_uid]
                study["NumberOfStudyRelatedSeries"] = max(
                    len(study["series"]), int(study.get("NumberOfStudyRelatedSeries") or 0)
                )
                events.append(
                    (
                        self.EVENTS.SERIES_ADDED,
                        {
                            "StudyInstanceUID": study_uid,
                            "seriesSummaryMetadata": study_summaries,
                            "madeInClient": made_in_client,
                        },
                    )
                )
        self._emit(events)

    def add_study(self, study: Mapping[str, Any]) -> None:
        """A study shell (patient, date, description...) if the study is not there yet."""
        uid = _require_uid(study, "StudyInstanceUID", "study")
        events: list[tuple[str, Any]] = []
        with self._lock:
            self._ensure_study(uid, study, events)
        self._emit(events)

    def update_series_metadata(self, series_metadata: Mapping[str, Any]) -> bool:
        """Merge fields into an existing series; returns False (and changes nothing) if absent."""
        study_uid = _require_uid(series_metadata, "StudyInstanceUID", "series metadata")
        series_uid = _require_uid(series_metadata, "SeriesInstanceUID", "series metadata")
        with self._lock:
            series = self._series.get((study_uid, series_uid))
            if series is None:
                return False
            series.update({k: v for k, v in series_metadata.items() if k != "instances"})
            return True

    def update_metadata_for_series(self, study_uid: str, series_uid: str, metadata: Mapping[str, Any]) -> None:
        """Write ``metadata`` onto every instance of a series (mapping values merged shallowly)."""
        with self._lock:
            series = self._series.get((study_uid, series_uid))
            if series is None:
                from .errors import NotFoundError

                raise NotFoundError(f"series {series_uid!r} of study {study_uid!r} is not in the store")
            by_sop = self._instances[(study_uid, series_uid)]
            updated = []
            for old in series["instances"]:
                new = dict(old)
                for key, value in metadata.items():
                    if isinstance(value, Mapping) and isinstance(new.get(key), Mapping):
                        new[key] = {**new[key], **value}
                    else:
                        new[key] = value
                self._unindex_image_ids(old)
                self._index_image_ids(new)
                by_sop[new["SOPInstanceUID"]] = new
                updated.append(new)
            series["instances"] = updated
        self._broadcast_event(
            self.EVENTS.SERIES_UPDATED,
            {"SeriesInstanceUID": series_uid, "StudyInstanceUID": study_uid, "madeInClient": True},
        )

    def set_study_loaded(self, study_uid: str, loaded: bool = True) -> None:
        with self._lock:
            study = self._studies.get(study_uid)
            if study is not None:
                study["isLoaded"] = loaded

    def remove_study(self, study_uid: str) -> bool:
        """Forget a study and everything under it; True if it was there."""
        with self._lock:
            study = self._studies.pop(study_uid, None)
            if study is None:
                return False
            for series in study["series"]:
                key = (study_uid, series["SeriesInstanceUID"])
                self._series.pop(key, None)
                if self._series_by_uid.get(series["SeriesInstanceUID"]) is series:
                    del self._series_by_uid[series["SeriesInstanceUID"]]
                for instance in self._instances.pop(key, {}).values():
                    self._unindex_image_ids(instance)
        self._broadcast_event(self.EVENTS.STUDY_REMOVED, {"StudyInstanceUID": study_uid})
        return True

    def clear(self) -> None:
        """Forget everything (``STUDY_REMOVED`` for each study)."""
        with self._lock:
            uids = list(self._studies)
            self._studies = {}
            self._series = {}
            self._series_by_uid = {}
            self._instances = {}
            self._by_image_id = {}
        for uid in uids:
            self._broadcast_event(self.EVENTS.STUDY_REMOVED, {"StudyInstanceUID": uid})

    # -- readers ----------------------------------------------------------------------------

    def get_study_instance_uids(self) -> list[str]:
        return list(self._studies)

    def get_study(self, study_uid: str) -> dict[str, Any] | None:
        return self._studies.get(study_uid)

    def get_series(self, study_uid: str | None, series_uid: str) -> dict[str, Any] | None:
        """A series; with no study UID, looked up by its own UID alone."""
        if not study_uid:
            return self._series_by_uid.get(series_uid)
        return self._series.get((study_uid, series_uid))

    def get_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> dict[str, Any] | None:
        by_sop = self._instances.get((study_uid, series_uid))
        return by_sop.get(sop_uid) if by_sop else None

    def get_instance_by_image_id(self, image_id: str) -> dict[str, Any] | None:
        """O(1) (OHIF scans every instance); a frame's image id finds its instance."""
        found = self._by_image_id.get(image_id)
        if found is None:
            base = _frameless(image_id)
            if base != image_id:
                found = self._by_image_id.get(base)
        return found

    def iter_studies(self) -> Iterable[dict[str, Any]]:
        return list(self._studies.values())

    def __len__(self) -> int:
        return len(self._studies)

    def __contains__(self, study_uid: object) -> bool:
        return study_uid in self._studies

    def __repr__(self) -> str:
        return f"DicomMetadataStore(studies={len(self._studies)})"
