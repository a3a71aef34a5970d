"""A DIMSE PACS as a data source (``default.dataSourcesModule.dimse``), with pynetdicom.

Searches are Study Root C-FINDs matched again with the shared QIDO rules (:mod:`.find`);
series metadata is retrieved by C-GET (or C-MOVE to the source's own SCP) into a cache folder
(:mod:`.cache`), naturalized from the files with bulk data as ``BulkDataURI``\\ s this source
resolves; frames and bulk data are read from the cached files. Through ``datasources serve``
the PACS becomes a DICOMweb endpoint.

Image ids are ``dimse:<study>/<series>/<sop>`` (``?frame=N`` from 1); bulk data URIs are the
image id with ``?tag=<tag path>``.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any
from urllib.parse import parse_qsl

from datasources.buffers import reader
from datasources.errors import (
    ConfigurationError,
    DataSourcesError,
    InvalidQueryError,
    NotFoundError,
    NotSupportedError,
    safe_message,
)
from datasources.interface import DataSource, IWebApiDataSource
from datasources.query import SearchQuery, parse_search
from datasources.results import InstanceOutcome, SeriesLoadTask, StoreResult
from datasources.source import Source

from ..dicomlocal.files import naturalize_file
from .cache import InstanceCache
from .config import DimseConfig
from .find import build_identifier, matched, record_of
from .frames import bulk_value, labelled, read_cached, read_labelled_frames
from .ops import DimseClient
from .retrieve import StorageSCP, retrieve_series

__all__ = ["DimseSource", "create_dimse_api"]

_SCHEME = "dimse:"
_WARNING_STATUSES = frozenset({0x0001, 0xB000, 0xB006, 0xB007})


def _require_uid(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidQueryError(f"dimse: {key} is required (a UID string), got {value!r}")
    return value


class DimseSource(Source):
    """One PACS reached over DIMSE; see the module docstring."""

    HELPERS = ("health", "echo", "close", "pool_stats", "path_for_image_id")
    FIRST_FRAME = 1

    def __init__(self, configuration: Mapping[str, Any], host: Any = None) -> None:
        super().__init__(configuration, host)
        self.config = DimseConfig.from_mapping(configuration)
        self.name = self.config.name or "dimse"
        self.client = DimseClient(self.config)
        self.cache = InstanceCache(self.config.cache)
        self.scp = StorageSCP(self.client, self.config.storage_host) if self.config.retrieve == "cmove" else None
        self.executor = ThreadPoolExecutor(self.config.max_associations, thread_name_prefix=f"dimse-{self.name}")
        self._inflight: dict[str, Future[list[dict[str, Any]]]] = {}
        self._inflight_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<DimseSource {self.config.peer()}>"

    # -- lifecycle ------------------------------------------------------------------------

    def initialize(self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> list[str]:
        """C-ECHO the PACS: a typed error naming host, port and AE titles when nobody (right) answers."""
        self.client.echo()
        return self.get_study_instance_uids(params, query)

    def echo(self, fresh: bool = True) -> float:
        """C-ECHO on a new association (the pool's may predate an outage); milliseconds taken."""
        start = time.perf_counter()
        self.client.echo(fresh=fresh)
        return (time.perf_counter() - start) * 1000

    def health(self) -> dict[str, Any]:
        """``{"ok", "peer", "latencyMs" | "error"}`` from a C-ECHO: what ``datasources sources`` shows."""
        try:
            return {"ok": True, "peer": self.config.peer(), "latencyMs": round(self.echo(), 2)}
        except DataSourcesError as exc:
            return {"ok": False, "peer": self.config.peer(), "error": safe_message(exc)}

    def pool_stats(self) -> dict[str, int]:
        return {"peak": self.client.pool.peak, "opened": self.client.pool.opened}

    def close(self) -> None:
        self.client.close()
        self.executor.shutdown(wait=False)

    def get_config(self) -> dict[str, Any]:
        return self.config.public()

    # -- query ------------------------------------------------------------------------------

    def _search(self, query: SearchQuery, level: str, scope: Mapping[str, str]) -> list[dict[str, Any]]:
        identifier, _ = build_identifier(query, level, scope)
        answers = self.client.find(identifier)
        records: Iterator[dict[str, Any]] = (record_of(a) for a in answers)
        try:
            if level == "study" and "ModalitiesInStudy" in query.filters:
                collected = list(records)  # the modalities may need series queries: no association held
                for record in collected:
                    if not record.get("ModalitiesInStudy"):
                        record["ModalitiesInStudy"] = self._modalities(str(record.get("StudyInstanceUID")))
                records = iter(collected)
            return list(matched(records, query))
        finally:
            answers.close()  # C-CANCEL if the page filled before the PACS was done

    def _modalities(self, study_uid: str) -> list[str]:
        series = self._search(parse_search("series"), "series", {"StudyInstanceUID": study_uid})
        return sorted({str(s["Modality"]) for s in series if s.get("Modality")})

    def search_studies(self, filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        return self._search(parse_search("study", filters, **kwargs), "study", {})

    def search_series(
        self, study_instance_uid: str, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        uid = _require_uid(study_instance_uid, "StudyInstanceUID")
        return self._search(parse_search("series", filters, **kwargs), "series", {"StudyInstanceUID": uid})

    def search_instances(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        filters: Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        study = _require_uid(study_instance_uid, "StudyInstanceUID")
        if isinstance(series_instance_uid, Mapping):
            series_instance_uid, filters = None, series_instance_uid
        query = parse_search("instance", filters, **kwargs)
        if series_instance_uid:
            scope = {"StudyInstanceUID": study, "SeriesInstanceUID": series_instance_uid}
            return self._search(query, "instance", scope)
        # Study Root is hierarchical: one IMAGE-level C-FIND per series, paged over all of them
        found: list[dict[str, Any]] = []
        for series in self.search_series(study):
            scope = {"StudyInstanceUID": study, "SeriesInstanceUID": str(series["SeriesInstanceUID"])}
            found += self._search(query.without_paging(), "instance", scope)
        return query.page(found)

    # -- metadata ---------------------------------------------------------------------------

    def _image_id(self, study: str, series: str, sop: str) -> str:
        return f"{_SCHEME}{study}/{series}/{sop}"

    def _naturalize(self, study: str, series: str) -> Any:
        def naturalize(sop: str, path: str) -> dict[str, Any]:
            image_id = self._image_id(study, series, sop)
            record, _ = naturalize_file(path, image_id)
            record["imageId"] = image_id
            return record

        return naturalize

    def series_instances(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """A series' naturalized instances: from the cache, else retrieved (once, however many ask)."""
        cached = self.cache.load_series(series_uid)
        if cached is not None:
            return cached
        with self._inflight_lock:
            future = self._inflight.get(series_uid)
            owner = future is None
            if owner:
                future = self._inflight[series_uid] = Future()
        assert future is not None
        if not owner:
            return future.result()
        try:
            instances = retrieve_series(
                self.client, self.cache, self.scp, study_uid, series_uid, self._naturalize(study_uid, series_uid)
            )
            future.set_result(instances)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._inflight_lock:
                self._inflight.pop(series_uid, None)
        return instances

    def series_metadata(
        self,
        study_instance_uid: str,
        *,
        series_instance_uids: Sequence[str] | None = None,
        made_in_client: bool = False,
        return_tasks: bool = False,
    ) -> Any:
        """Retrieve a study's series into the store; every series whole, or the store unchanged."""
        study_uid = _require_uid(study_instance_uid, "StudyInstanceUID")
        if return_tasks and not self.config.lazy:
            raise ConfigurationError(f"{self.name}: return_tasks needs enableStudyLazyLoad in the configuration")
        rows = self.search_series(study_uid)
        if series_instance_uids:
            wanted = set(series_instance_uids)
            missing = sorted(wanted - {r["SeriesInstanceUID"] for r in rows})
            if missing:
                raise NotFoundError(f"dimse: series {missing} are not in study {study_uid!r} on {self.config.peer()}")
            rows = [r for r in rows if r["SeriesInstanceUID"] in wanted]
        if not rows:
            raise NotFoundError(f"dimse: study {study_uid!r} has no series on {self.config.peer()}")
        store = self.host.metadata_store
        studies = self.search_studies(StudyInstanceUID=study_uid)
        study = {k: v for k, v in (studies[0] if studies else {"StudyInstanceUID": study_uid}).items()}
        study = {k: v for k, v in study.items() if not k.startswith("NumberOf")}
        summaries = [{**r, "StudyInstanceUID": study_uid} for r in rows]

        def load(summary: dict[str, Any]) -> list[dict[str, Any]]:
            instances = self.series_instances(study_uid, str(summary["SeriesInstanceUID"]))
            if instances:
                store.add_instances(instances, made_in_client=made_in_client)
            return instances

        if self.config.lazy:
            if store.get_study(study_uid) is None:
                store.add_study(study)
            store.add_series_metadata(summaries, made_in_client=made_in_client)
            tasks = [SeriesLoadTask(s, lambda s=s: load(s), self.executor) for s in summaries]
            if return_tasks:
                return tasks
            for task in tasks:
                task.result()
            store.set_study_loaded(study_uid)
            return {s["SeriesInstanceUID"]: s for s in summaries}

        futures = [
            self.executor.submit(self.series_instances, study_uid, str(s["SeriesInstanceUID"])) for s in summaries
        ]
        per_series = [f.result() for f in futures]  # the first failure is raised: the store is untouched
        if store.get_study(study_uid) is None:
            store.add_study(study)
        store.add_series_metadata(summaries, made_in_client=made_in_client)
        for instances in per_series:
            if instances:
                store.add_instances(instances, made_in_client=made_in_client)
        if not series_instance_uids:
            store.set_study_loaded(study_uid)
        return {s["SeriesInstanceUID"]: s for s in summaries}

    # -- frames, bulk data, image ids ---------------------------------------------------------

    def _file(self, study: str, series: str, sop: str) -> str:
        path = self.cache.cached_instance(sop)
        if path is None:
            instances = self.series_instances(study, series)
            if not any(i.get("SOPInstanceUID") == sop for i in instances):
                raise NotFoundError(f"dimse: no instance {study}/{series}/{sop} on {self.config.peer()}")
            path = self.cache.cached_instance(sop)
            if path is None:
                raise NotFoundError(f"dimse: instance {sop} left the cache before it could be read")
        return str(path)

    def _parse(self, uri: Any) -> tuple[str, str, str, dict[str, str]]:
        if isinstance(uri, Mapping):
            uri = uri.get("BulkDataURI")
        if not isinstance(uri, str) or not uri.startswith(_SCHEME):
            raise InvalidQueryError(f"dimse: {uri!r} is not a URI of this source (dimse:<study>/<series>/<sop>)")
        body, _, query = uri[len(_SCHEME) :].partition("?")
        parts = body.split("/")
        if len(parts) != 3 or not all(parts):
            raise InvalidQueryError(f"dimse: {uri!r} does not name study/series/instance")
        return parts[0], parts[1], parts[2], dict(parse_qsl(query))

    def frames(
        self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Sequence[int] | int = 1
    ) -> list[bytes]:
        """Frames (from 1) as stored in the PACS's file, each labelled with its transfer syntax."""
        numbers = [frame_numbers] if isinstance(frame_numbers, int) else list(frame_numbers)
        if not numbers or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in numbers):
            raise InvalidQueryError(f"dimse: frame numbers count from 1: {frame_numbers!r}")
        return read_cached(
            lambda: self._file(study_uid, series_uid, sop_uid),
            lambda path: list(read_labelled_frames(path, numbers)),
            f"instance {sop_uid}",
        )

    def bulk_data_uri(self, uri: str | Mapping[str, Any], **_: Any) -> bytes:
        study, series, sop, params = self._parse(uri)
        frame = _number(params["frame"]) if "frame" in params else None

        def read(path: str) -> bytes:
            if frame is not None:
                return read_labelled_frames(path, [frame])[0]
            if "tag" in params:
                data = bulk_value(path, params["tag"])
                if params["tag"].upper() == "7FE00010":
                    from pydicom.filereader import read_file_meta_info

                    return labelled(data, str(read_file_meta_info(path).get("TransferSyntaxUID", "")) or None)
                return data
            with open(path, "rb") as fh:
                return fh.read()

        return read_cached(lambda: self._file(study, series, sop), read, f"instance {sop}")

    def path_for_image_id(self, image_id: str) -> str:
        """The cached file behind an image id (retrieved first when it is not cached)."""
        study, series, sop, _ = self._parse(image_id)
        return self._file(study, series, sop)

    # -- store and reject ---------------------------------------------------------------------

    def store_dicom(self, items: Any, **_: Any) -> StoreResult:
        """C-STORE each instance; one outcome per input, in order (a refused one never stops the rest)."""
        if not self.config.upload:
            raise NotSupportedError("store.dicom", reason="the source is configured dicomUploadEnabled: false")
        from pydicom import dcmread

        from ..dicomlocal.writing import _as_part10, _Refused

        batch = list(items) if isinstance(items, list | tuple) else [items]
        outcomes: list[InstanceOutcome | None] = [None] * len(batch)
        datasets, positions, origins, contents = [], [], [], []
        for i, item in enumerate(batch):
            try:
                with warnings.catch_warnings(), ExitStack() as stack:
                    warnings.simplefilter("ignore")
                    origin, data = _as_part10(i, item)
                    # the header now, the whole just before it is sent: one instance in memory at a time
                    fp = stack.enter_context(reader(data))
                    ds = dcmread(fp, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
                    ds.SOPClassUID, ds.SOPInstanceUID  # noqa: B018 - required to send it
            except _Refused as exc:
                outcomes[i] = InstanceOutcome("failed", None, None, exc.reason, origin=exc.origin)
                continue
            except Exception as exc:
                outcomes[i] = InstanceOutcome("failed", None, None, f"not DICOM: {exc}", origin=f"input {i}")
                continue
            datasets.append(ds)
            positions.append(i)
            origins.append(origin)
            contents.append(data)

        def load(position: int) -> Any:
            with warnings.catch_warnings(), reader(contents[position]) as fp:
                warnings.simplefilter("ignore")
                return dcmread(fp)

        if datasets:
            sent = self.client.store(datasets, load)
            for (ds, status, reason), i, origin in zip(sent, positions, origins, strict=True):
                sop, cls = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
                if status == 0:
                    outcomes[i] = InstanceOutcome("stored", sop, cls, None, origin=origin)
                elif status in _WARNING_STATUSES:
                    outcomes[i] = InstanceOutcome(
                        "warning", sop, cls, f"status 0x{status:04X} {reason or ''}".strip(), origin=origin
                    )
                else:
                    text = reason if status is None else f"status 0x{status:04X} {reason or ''}".strip()
                    outcomes[i] = InstanceOutcome("failed", sop, cls, text, origin=origin)
        return StoreResult(o for o in outcomes if o is not None)

    def reject_series(self, *_: Any, **__: Any) -> None:
        raise NotSupportedError(
            "reject.series", self.name, "DIMSE has no reject message (IOCM rejection is the PACS's own workflow)"
        )


def _number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise InvalidQueryError(f"dimse: frame={text!r} is not a number") from None
    if number < 1:
        raise InvalidQueryError(f"dimse: frame={text!r}: frames count from 1")
    return number


def create_dimse_api(configuration: Mapping[str, Any], host: Any = None) -> DataSource:
    """Factory for ``default.dataSourcesModule.dimse``: checks the configuration; no network yet."""
    if configuration is None:
        raise ConfigurationError("dimse: a configuration with host, port and calledAETitle is required")
    return IWebApiDataSource.from_source(DimseSource(configuration, host))
