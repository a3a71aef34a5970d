"""WADO-RS metadata for the dicomweb source: a study's series fetched, naturalized, into the store.

A series is added to the host's metadata store only once all of it has arrived, and a failed
study retrieve adds nothing; a whole-study retrieve is fetched once however many callers ask
at the same time (a per-study future, forgotten on failure and by ``delete_study_metadata``).
With ``enableStudyLazyLoad`` each series is a :class:`SeriesLoadTask`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar

from datasources.errors import (
    ConfigurationError,
    DataSourcesError,
    InvalidQueryError,
    MalformedResponseError,
    NotFoundError,
    safe_message,
)
from datasources.naturalize import naturalize_many, paused_gc

from .bulkdata import fix_bulk_data_uri, image_id
from .client import DicomWebClient
from .config import DicomWebConfig

if TYPE_CHECKING:
    from datasources.results import SeriesMetadataJson

__all__ = ["LAZY_SERIES_INCLUDE", "SERIES_SUMMARY_FIELDS", "MetadataRetrieve"]

T = TypeVar("T")

SERIES_SUMMARY_FIELDS = (
    "StudyInstanceUID",
    "StudyDescription",
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesDate",
    "SeriesTime",
    "SOPClassUID",
    "ProtocolName",
    "Modality",
)
LAZY_SERIES_INCLUDE = ("SeriesDate", "SeriesTime", "SeriesDescription", "SeriesNumber")


class MetadataRetrieve:
    """``series_metadata`` and ``fetch_series`` (a mixin of :class:`~.source.DicomWebSource`, whose state it uses)."""

    # state and members: DicomWebSource's
    config: DicomWebConfig
    client: DicomWebClient
    name: str
    store: Any  # the host's metadata store
    executor: ThreadPoolExecutor
    search: Callable[..., list[dict[str, Any]]]  # QIDO (DicomWebSource.search)
    _cache: dict[str, Future[dict[str, dict[str, Any]]]]
    _cache_lock: threading.Lock
    _load_errors: dict[tuple[str, str], DataSourcesError]

    def _series_list(self, study_uid: str, wanted: set[str]) -> list[dict[str, Any]]:
        from datasources.query import parse_search  # on first use: creating a source needs no parser

        q = parse_search("series", includefield=list(LAZY_SERIES_INCLUDE))
        rows = self.search(q, study_uid)
        for row in rows:
            row["StudyInstanceUID"] = study_uid  # some servers (GCP) leave it out
        if wanted:
            rows = [r for r in rows if r.get("SeriesInstanceUID") in wanted]
            missing = wanted - {r["SeriesInstanceUID"] for r in rows}
            if missing:
                raise NotFoundError(f"series {sorted(missing)} not in study {study_uid!r} on {self.name}")
        if not rows:
            raise NotFoundError(f"study {study_uid!r} has no series on {self.name}")
        return sorted(rows, key=_series_order)

    def fetch_series_json(self, study_uid: str, series_uid: str) -> list[Any]:
        """One series' WADO-RS metadata as the backend sent it (a JSON array, else MalformedResponseError)."""
        url = f"{self.config.wado_root}/studies/{study_uid}/series/{series_uid}/metadata"
        raw = self.client.get_json(url, ok=(200,))
        if not isinstance(raw, list):
            raise MalformedResponseError(f"{self.name}: {series_uid} metadata is not a JSON array")
        return raw

    def fetch_series(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """One series' instances: fetched, naturalized, BulkDataURIs resolved, image ids set."""
        with paused_gc():
            return self._naturalized(self.fetch_series_json(study_uid, series_uid), study_uid, series_uid)

    def _naturalized(self, raw: list[Any], study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        config = self.config
        refs: list[list[dict[str, Any]]] | None = [] if config.bulk.enabled else None
        instances = naturalize_many(raw, bulk_refs=refs)
        wado_root = config.wado_root
        wado_uri = config.raw.get("wadoUri") or config.wado_uri_root  # OHIF copies wadoUri onto instances
        for index, instance in enumerate(instances):
            if "SOPInstanceUID" not in instance:
                raise MalformedResponseError(f"{self.name}: an instance of {series_uid} has no SOPInstanceUID")
            study = instance.setdefault("StudyInstanceUID", study_uid)
            series = instance.setdefault("SeriesInstanceUID", series_uid)
            if refs is not None:  # only the references naturalize made, not a walk over every element
                for ref in refs[index]:
                    ref["BulkDataURI"] = fix_bulk_data_uri(ref["BulkDataURI"], study, series, config)
            instance["imageId"] = image_id(instance, config)
            instance["wadoRoot"] = wado_root
            instance["wadoUri"] = wado_uri
        instances.sort(key=_instance_order)
        return instances

    def _series_json(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """:meth:`fetch_series_json` with the UIDs the store would add, in the store's instance order."""
        with paused_gc():
            raw = self.fetch_series_json(study_uid, series_uid)
        for dataset in raw:
            if not isinstance(dataset, dict):
                raise MalformedResponseError(f"{self.name}: an instance of {series_uid} is not a JSON object")
            if "0020000D" not in dataset:
                dataset["0020000D"] = {"vr": "UI", "Value": [study_uid]}
            if "0020000E" not in dataset:
                dataset["0020000E"] = {"vr": "UI", "Value": [series_uid]}
        raw.sort(key=_json_instance_order)
        return raw

    def series_metadata_json(
        self, study_uid: str, *, series_instance_uids: Sequence[str] | None = None, made_in_client: bool = False
    ) -> SeriesMetadataJson | None:
        """The study's (or these series') metadata as the backend sent it, and its fill into the store.

        None with ``enableStudyLazyLoad`` (each series is its own task there). Nothing reaches
        the store until ``fill()``; a failed fetch raises here, as ``series_metadata`` would.
        """
        if not study_uid or not isinstance(study_uid, str):
            raise InvalidQueryError("retrieve.series.metadata_json needs a StudyInstanceUID")
        if self.config.lazy:
            return None
        wanted = set(series_instance_uids or ())
        rows = self._series_list(study_uid, wanted)
        raws = _all_or_none([self.executor.submit(self._series_json, study_uid, r["SeriesInstanceUID"]) for r in rows])
        key = _cache_key(study_uid, wanted)

        def fill() -> dict[str, dict[str, Any]]:
            with paused_gc():
                fetched = [
                    (row, self._naturalized(raw, study_uid, row["SeriesInstanceUID"]))
                    for row, raw in zip(rows, raws, strict=True)
                ]
            result = self._add_fetched(study_uid, fetched, made_in_client)
            done: Future[dict[str, dict[str, Any]]] = Future()
            done.set_result(result)
            with self._cache_lock:
                self._cache.setdefault(key, done)  # a later series_metadata finds it loaded
            return result

        from datasources.results import SeriesMetadataJson

        return SeriesMetadataJson([dataset for raw in raws for dataset in raw], fill)

    def _summary(self, row: Mapping[str, Any], first: Mapping[str, Any] | None) -> dict[str, Any]:
        summary = {k: row[k] for k in SERIES_SUMMARY_FIELDS if row.get(k) is not None}
        if first is not None:
            for key in SERIES_SUMMARY_FIELDS:
                if key not in summary and first.get(key) is not None:
                    summary[key] = first[key]
        return summary

    def _add_study_shell(self, study_uid: str, first: Mapping[str, Any]) -> None:
        if self.store.get_study(study_uid) is None:
            self.store.add_study(
                {
                    "StudyInstanceUID": study_uid,
                    **{k: v for k, v in first.items() if k.startswith(("Patient", "Study", "Accession"))},
                }
            )

    def series_load_error(self, study_uid: str, series_uid: str) -> DataSourcesError | None:
        """Why the last lazy load of a series failed (the typed error), or None if it did not."""
        with self._cache_lock:
            return self._load_errors.get((study_uid, series_uid))

    def _load_one(self, study_uid: str, row: Mapping[str, Any], made_in_client: bool) -> dict[str, Any]:
        """A lazy task's work: fetch one series, then add it to the store whole.

        A failure is recorded on the series (``loadError`` in the store: its type and a message
        without secrets; the error itself from :meth:`series_load_error`), no instance of it is
        added (so no ``instancesAdded``), and the next request for the study loads it again.
        """
        series_uid = row["SeriesInstanceUID"]
        try:
            instances = self.fetch_series(study_uid, series_uid)
        except DataSourcesError as exc:
            with self._cache_lock:
                self._load_errors[(study_uid, series_uid)] = exc
            self.store.update_series_metadata(
                {
                    "StudyInstanceUID": study_uid,
                    "SeriesInstanceUID": series_uid,
                    "loadError": {"type": type(exc).__name__, "message": safe_message(exc)},
                }
            )
            raise
        with self._cache_lock:
            self._load_errors.pop((study_uid, series_uid), None)
        recorded = self.store.get_series(study_uid, series_uid)
        if recorded is not None:
            recorded.pop("loadError", None)
        summary = self._summary(row, instances[0] if instances else None)
        self._add_study_shell(study_uid, instances[0] if instances else summary)
        self.store.update_series_metadata(summary)
        if instances:
            self.store.add_instances(instances, made_in_client=made_in_client)
        return summary

    def series_metadata(
        self,
        study_uid: str,
        *,
        series_instance_uids: Sequence[str] | None = None,
        made_in_client: bool = False,
        return_tasks: bool = False,
    ) -> Any:
        if not study_uid or not isinstance(study_uid, str):
            raise InvalidQueryError("retrieve.series.metadata needs a StudyInstanceUID")
        wanted = set(series_instance_uids or ())
        if return_tasks and not self.config.lazy:
            raise ConfigurationError(f"{self.name}: return_tasks needs enableStudyLazyLoad in the configuration")
        if self.config.lazy:
            from datasources.results import SeriesLoadTask

            rows = self._series_list(study_uid, wanted)
            self.store.add_series_metadata(rows, made_in_client=made_in_client)
            tasks = [
                SeriesLoadTask(row, lambda row=row: self._load_one(study_uid, row, made_in_client), self.executor)
                for row in rows
            ]
            if return_tasks:
                return tasks
            results = [t.start() for t in tasks]
            wait(results)  # every series gets its chance; a failed one is recorded on it
            failed = [(t, f.exception()) for t, f in zip(tasks, results, strict=True) if f.exception() is not None]
            if failed:
                self.store.set_study_loaded(study_uid, False)
                raise failed[0][1]  # type: ignore[misc]
            summaries = {s["SeriesInstanceUID"]: s for s in (f.result() for f in results)}
            self.store.set_study_loaded(study_uid)
            return summaries
        key = _cache_key(study_uid, wanted)
        with self._cache_lock:
            future = self._cache.get(key)
            owner = future is None
            if owner:
                future = Future()
                self._cache[key] = future
        assert future is not None
        if owner:
            try:
                future.set_result(self._retrieve_whole(study_uid, wanted, made_in_client))
            except BaseException as exc:
                with self._cache_lock:
                    self._cache.pop(key, None)  # a failure is not cached: asking again tries again
                future.set_exception(exc)
        return future.result()

    def _retrieve_whole(self, study_uid: str, wanted: set[str], made_in_client: bool) -> dict[str, dict[str, Any]]:
        rows = self._series_list(study_uid, wanted)
        futures = [self.executor.submit(self.fetch_series, study_uid, r["SeriesInstanceUID"]) for r in rows]
        fetched = list(zip(rows, _all_or_none(futures), strict=True))  # on a failure, nothing is added
        return self._add_fetched(study_uid, fetched, made_in_client)

    def _add_fetched(
        self, study_uid: str, fetched: list[tuple[Mapping[str, Any], list[dict[str, Any]]]], made_in_client: bool
    ) -> dict[str, dict[str, Any]]:
        """Whole series into the store: the study, its series summaries, then their instances."""
        summaries = [self._summary(row, instances[0] if instances else None) for row, instances in fetched]
        first = next((inst[0] for _, inst in fetched if inst), summaries[0])
        self._add_study_shell(study_uid, first)
        self.store.add_series_metadata(summaries, made_in_client=made_in_client)
        for _, instances in fetched:
            if instances:
                self.store.add_instances(instances, made_in_client=made_in_client)
        self.store.set_study_loaded(study_uid)
        return {s["SeriesInstanceUID"]: s for s in summaries}

    def delete_study_metadata(self, study_uid: str) -> None:
        """Forget the cached retrieve of a study (every cache key of it), so the next one fetches again.

        Only the cache (OHIF's cache bust after STOW): the metadata store keeps what it holds."""
        with self._cache_lock:
            for key in [k for k in self._cache if k == study_uid or k.startswith(f"{study_uid}|")]:
                del self._cache[key]


def _series_order(row: Mapping[str, Any]) -> tuple[int, float, str]:
    low_priority = row.get("Modality") in ("SR", "SEG", "RTSTRUCT", "PR", "KO")
    try:
        number = float(row.get("SeriesNumber") or 0)
    except (TypeError, ValueError):
        number = 0.0
    return (1 if low_priority else 0, number, str(row.get("SeriesInstanceUID")))


def _instance_order(instance: Mapping[str, Any]) -> tuple[float, str]:
    try:
        number = float(instance.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        number = 0.0
    return (number, str(instance.get("SOPInstanceUID")))


def _cache_key(study_uid: str, wanted: set[str]) -> str:
    """The single-flight cache's key of a retrieve: the study, and the series asked for if any."""
    return study_uid if not wanted else f"{study_uid}|{','.join(sorted(wanted))}"


def _all_or_none(futures: list[Future[T]]) -> list[T]:
    """Every future's result in order; on the first failure the rest are cancelled and it is raised."""
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _json_instance_order(dataset: Mapping[str, Any]) -> tuple[float, str]:
    """:func:`_instance_order` for DICOM JSON (InstanceNumber 00200013, SOPInstanceUID 00080018)."""
    number, sop = _first(dataset, "00200013"), _first(dataset, "00080018")
    return _instance_order({"InstanceNumber": number, "SOPInstanceUID": sop})


def _first(dataset: Mapping[str, Any], tag: str) -> Any:
    element = dataset.get(tag)
    value = element.get("Value") if isinstance(element, dict) else None
    return value[0] if isinstance(value, list) and value else None
