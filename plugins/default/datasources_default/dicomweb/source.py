"""The dicomweb data source: QIDO-RS, WADO-RS and STOW-RS against any DICOMweb server.

The factory checks the configuration and opens nothing; the session is made on first use.
Metadata flows server -> naturalized dicts -> the host's metadata store, a whole series at a
time: a series is added only once all of it has arrived, and a failed study retrieve adds
nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs
from datasources.errors import ConfigurationError, InvalidQueryError, NotFoundError, NotSupportedError
from datasources.forwarding import ContextThreadPoolExecutor
from datasources.interface import DataSource, IWebApiDataSource
from datasources.matching import filter_records
from datasources.naturalize import naturalize_many, paused_gc
from datasources.query import SearchQuery, parse_search
from datasources.results import SeriesLoadTask, StoreResult

from .. import imageids
from .bulkdata import fix_bulk_data_uri, image_id
from .client import DicomWebClient
from .config import DicomWebConfig
from .qido import plan_query
from .static_list import StaticList
from .stow import store_instances

__all__ = ["DicomWebSource", "create_dicomweb_api"]

log = logging.getLogger("datasources.dicomweb")

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
DEFAULT_INCLUDE = {
    "study": ("StudyDescription", "ModalitiesInStudy"),
    "series": ("SeriesDescription", "SeriesDate", "SeriesTime"),
}
_PAGE = 200


class DicomWebSource:
    """The implementation behind the interface; one per configured source."""

    def __init__(self, configuration: Mapping[str, Any], host: Any = None) -> None:
        self.config = DicomWebConfig.from_mapping(configuration)
        self.host = host
        self.name = str(configuration.get("name") or configuration.get("friendlyName") or "dicomweb")
        self.client = DicomWebClient(self.config, self.name)
        self._cache: dict[str, Future[dict[str, dict[str, Any]]]] = {}
        self._cache_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.static_list = StaticList(self.client, self.name)

    def __repr__(self) -> str:
        return f"DicomWebSource({self.name!r}, wadoRoot={self.config.wado_root!r}, auth={self.config.auth!r})"

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._cache_lock:
                if self._executor is None:
                    # tasks run in the caller's context: a gateway client's forwarded credentials follow them
                    self._executor = ContextThreadPoolExecutor(self.config.max_workers, thread_name_prefix="dicomweb")
        return self._executor

    @property
    def store(self) -> Any:
        if self.host is None:
            raise ConfigurationError("dicomweb: retrieving metadata needs the host (its metadata store)")
        return self.host.metadata_store

    # -- QIDO ---------------------------------------------------------------------------------

    def _search_url(self, q: SearchQuery, study_uid: str | None, series_uid: str | None) -> str:
        root = self.config.qido_root
        if q.level == "study":
            return f"{root}/studies"
        if q.level == "series":
            return f"{root}/studies/{study_uid}/series" if study_uid else f"{root}/series"
        if study_uid and series_uid:
            return f"{root}/studies/{study_uid}/series/{series_uid}/instances"
        return f"{root}/studies/{study_uid}/instances" if study_uid else f"{root}/instances"

    def search(self, q: SearchQuery, study_uid: str | None = None, series_uid: str | None = None) -> list[dict]:
        """Rows of a QIDO search, naturalized; exact whatever the server's quirks (see qido.py)."""
        if not q.includefield and q.level in DEFAULT_INCLUDE and self.config.supports_include_field:
            # as OHIF: some servers (Orthanc) leave descriptions out unless asked for them
            q = attrs.evolve(q, includefield=DEFAULT_INCLUDE[q.level])
        plan = plan_query(
            q,
            encoding=self.config.query_encoding,
            supports_wildcard=self.config.supports_wildcard,
            supports_fuzzy=self.config.supports_fuzzy,
            supports_include_field=self.config.supports_include_field,
            static=self.config.static_wado,
        )
        base = self._search_url(q, study_uid, series_uid)
        if not plan.client_filter and not plan.client_paging:
            return self._naturalize_rows(self.client.get_json(plan.url(base)))
        if self.config.static_wado:
            rows = self.static_list.get(base)  # parsed once, revalidated with its ETag/Last-Modified
            with paused_gc():
                return self._naturalize_rows(filter_records(rows, q, format="dicom_json"))
        # the server narrows, the client decides: page through the server's answers until the
        # client has offset + limit exact matches
        wanted = None if q.limit is None else q.offset + q.limit
        matched: list[dict[str, Any]] = []
        exact = q.without_paging()
        offset = 0
        while True:
            url = plan.url(base)
            sep = "&" if "?" in url else "?"
            rows = self.client.get_json(f"{url}{sep}limit={_PAGE}&offset={offset}")
            matched += filter_records(rows, exact, format="dicom_json")
            if (wanted is not None and len(matched) >= wanted) or len(rows) < _PAGE:
                break
            offset += len(rows)
        return self._naturalize_rows(q.page(matched))

    def _naturalize_rows(self, rows: Any) -> list[dict[str, Any]]:
        if not isinstance(rows, list):
            from datasources.errors import MalformedResponseError

            raise MalformedResponseError(f"{self.name}: a QIDO answer is a JSON array, not {type(rows).__name__}")
        return naturalize_many(rows)

    def iter_search(
        self, level: str, filters: Mapping[str, Any] | None = None, /, *, page_size: int = 100, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        """Every match, page by page (``limit``/``offset``), without holding them all."""
        if page_size < 1:
            raise InvalidQueryError("page_size must be 1 or more")
        study_uid = kwargs.pop("study_instance_uid", None)
        series_uid = kwargs.pop("series_instance_uid", None)
        q = parse_search(level, filters, **kwargs)
        offset = q.offset
        while True:
            page = self.search(
                SearchQuery(q.level, q.filters, page_size, offset, q.fuzzymatching, q.includefield),
                study_uid,
                series_uid,
            )
            yield from page
            if len(page) < page_size:
                return
            offset += page_size

    # -- WADO metadata ------------------------------------------------------------------------

    def _series_list(self, study_uid: str, wanted: set[str]) -> list[dict[str, Any]]:
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

    def fetch_series(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """One series' instances: fetched, naturalized, BulkDataURIs resolved, image ids set."""
        url = f"{self.config.wado_root}/studies/{study_uid}/series/{series_uid}/metadata"
        config = self.config
        fix = config.bulk.enabled
        refs: list[list[dict[str, Any]]] | None = [] if fix else None
        with paused_gc():
            raw = self.client.get_json(url, ok=(200,))
            if not isinstance(raw, list):
                from datasources.errors import MalformedResponseError

                raise MalformedResponseError(f"{self.name}: {series_uid} metadata is not a JSON array")
            instances = naturalize_many(raw, bulk_refs=refs)
            del raw  # the naturalized instances are all that is kept
            wado_root = config.wado_root
            wado_uri = config.raw.get("wadoUri") or config.wado_uri_root  # OHIF copies wadoUri onto instances
            for index, instance in enumerate(instances):
                if "SOPInstanceUID" not in instance:
                    from datasources.errors import MalformedResponseError

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

    def _load_one(self, study_uid: str, row: Mapping[str, Any], made_in_client: bool) -> dict[str, Any]:
        """A lazy task's work: fetch one series, then add it to the store whole."""
        instances = self.fetch_series(study_uid, row["SeriesInstanceUID"])
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
            rows = self._series_list(study_uid, wanted)
            self.store.add_series_metadata(rows, made_in_client=made_in_client)
            tasks = [
                SeriesLoadTask(row, lambda row=row: self._load_one(study_uid, row, made_in_client), self.executor)
                for row in rows
            ]
            if return_tasks:
                return tasks
            results = [t.start() for t in tasks]
            summaries = {s["SeriesInstanceUID"]: s for s in (f.result() for f in results)}
            self.store.set_study_loaded(study_uid)
            return summaries
        key = study_uid if not wanted else f"{study_uid}|{','.join(sorted(wanted))}"
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
        fetched = []
        try:
            for row, future in zip(rows, futures, strict=True):
                fetched.append((row, future.result()))
        except BaseException:
            for future in futures:
                future.cancel()
            raise  # nothing was added to the store
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
        """Forget the cached retrieve of a study (every cache key of it), so the next one fetches again."""
        with self._cache_lock:
            for key in [k for k in self._cache if k == study_uid or k.startswith(f"{study_uid}|")]:
                del self._cache[key]

    # -- frames, bulk data, URLs --------------------------------------------------------------

    def _accept(self, kind: str) -> str:
        if self.config.accept_header:
            return ", ".join(self.config.accept_header)
        if kind in self.config.singlepart:
            return "application/octet-stream"
        q = "" if self.config.omit_quotes else '"'
        if kind == "image" and self.config.transfer_syntax not in ("*", ""):
            ts = self.config.transfer_syntax
            return f"multipart/related; type={q}application/octet-stream{q}; transfer-syntax={q}{ts}{q}"
        return f"multipart/related; type={q}application/octet-stream{q}; transfer-syntax=*"

    def frames(
        self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Sequence[int] | int = 1
    ) -> list[bytes]:
        """Frames (numbered from 1) of an instance, as the server sends them (WADO-RS)."""
        numbers = [frame_numbers] if isinstance(frame_numbers, int) else list(frame_numbers)
        if not numbers or any(not isinstance(n, int) or n < 1 for n in numbers):
            raise InvalidQueryError(f"frame numbers count from 1: {frame_numbers!r}")
        url = (
            f"{self.config.wado_root}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
            f"/frames/{','.join(map(str, numbers))}"
        )
        parts = self.client.get_parts(url, self._accept("image"))
        if len(parts) != len(numbers):
            from datasources.errors import MalformedResponseError

            raise MalformedResponseError(f"{self.name}: asked for {len(numbers)} frames, the answer holds {len(parts)}")
        return [p.content for p in parts]

    def bulk_data_uri(
        self, uri: str | Mapping[str, Any], *, study_instance_uid: str | None = None,
        series_instance_uid: str | None = None,
    ) -> bytes:  # fmt: skip
        """The bytes behind a BulkDataURI (relative ones resolved as OHIF does)."""
        if isinstance(uri, Mapping):
            study_instance_uid = study_instance_uid or uri.get("StudyInstanceUID")
            uri = uri["BulkDataURI"]
        if not uri.startswith(("http://", "https://")):
            if not study_instance_uid:
                raise InvalidQueryError(f"the relative BulkDataURI {uri!r} needs its StudyInstanceUID")
            uri = fix_bulk_data_uri(uri, study_instance_uid, series_instance_uid, self.config)
        parts = self.client.get_parts(uri, self._accept("bulkdata"))
        if not parts:
            from datasources.errors import MalformedResponseError

            raise MalformedResponseError(f"{self.name}: the bulk data answer holds no part")
        return parts[0].content

    def direct_url(
        self,
        instance: Mapping[str, Any] | None = None,
        *,
        url: str | None = None,
        tag: str = "PixelData",
        default_path: str = "/pixeldata",
        default_type: str = "video/mp4",
        **_: Any,
    ) -> str:
        """A URL for an instance's bulk data: ``/rendered`` for pixels, else the BulkDataURI with ``accept=``."""
        if url:
            return url
        if instance is None:
            raise InvalidQueryError("direct_url needs an instance or a url")
        value = instance.get(tag)
        study, series, sop = (instance.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
        instance_url = f"{self.config.wado_root}/studies/{study}/series/{series}/instances/{sop}"
        bulk = value.get("BulkDataURI") if isinstance(value, Mapping) else None
        if tag in ("PixelData", "EncapsulatedDocument") and (not bulk or "?" not in bulk):
            return f"{instance_url}/rendered"
        target = bulk or f"{instance_url}{default_path}"
        if target.startswith("series/"):
            target = f"{self.config.wado_root}/studies/{study}/{target}"
        sep = "&" if "?" in target else "?"
        return f"{target}{sep}accept={default_type}"

    def image_id_for_instance(self, instance: Mapping[str, Any], frame: int | None = None) -> str:
        if frame is None and instance.get("imageId"):
            return str(instance["imageId"])
        if instance.get("url"):
            return str(instance["url"])
        return image_id(instance, self.config, frame)

    def reject_series(self, study_uid: str, series_uid: str) -> None:
        if not self.config.supports_reject:
            raise NotSupportedError("reject.series", self.name, "set supportsReject for a dcm4chee-style server")
        url = f"{self.config.wado_root}/studies/{study_uid}/series/{series_uid}/reject/113039%5EDCM"
        self.client.request("POST", url, ok=(200, 204))

    def store_dicom(self, items: Any, **kwargs: Any) -> StoreResult:
        return store_instances(self.client, items, **kwargs)


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


def create_dicomweb_api(configuration: Mapping[str, Any], host: Any = None) -> DataSource:
    """Factory for ``default.dataSourcesModule.dicomweb``: validates, opens nothing."""
    src = DicomWebSource(configuration, host)

    def initialize(params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> list[str]:
        return imageids.study_uids_from_route(params, query)

    def search_studies(filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        return src.search(parse_search("study", filters, **kwargs))

    def search_series(study_uid: str, filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> list[dict]:
        return src.search(parse_search("series", filters, **kwargs), study_uid)

    def search_instances(
        study_uid: str, series_uid: str | None = None, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        return src.search(parse_search("instance", filters, **kwargs), study_uid, series_uid)

    def image_ids_for_display_set(display_set: Any) -> list[str]:
        return imageids.image_ids_for_display_set(display_set, src.image_id_for_instance, first_frame=1)

    def get_study_instance_uids(
        params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None
    ) -> list[str]:
        return imageids.study_uids_from_route(params, query)

    helpers: dict[str, Callable[..., Any]] = {
        "iter_search": src.iter_search,
        "fetch_series": src.fetch_series,
        "frames": src.frames,
        "session": lambda: src.client.session,
        "close": src.client.close,
    }
    return IWebApiDataSource.create(
        initialize=initialize,
        query={
            "studies": {"search": search_studies},
            "series": {"search": search_series},
            "instances": {"search": search_instances},
        },
        retrieve={
            "series": {"metadata": src.series_metadata},
            "direct_url": src.direct_url,
            "bulk_data_uri": src.bulk_data_uri,
            "frames": src.frames,
        },
        store={"dicom": src.store_dicom},
        reject={"series": src.reject_series},
        get_image_ids_for_display_set=image_ids_for_display_set,
        get_image_ids_for_instance=src.image_id_for_instance,
        get_config=src.config.public,
        get_study_instance_uids=get_study_instance_uids,
        delete_study_metadata=src.delete_study_metadata,
        helpers=helpers,
    )
