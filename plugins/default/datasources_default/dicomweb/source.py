"""The dicomweb data source: QIDO-RS, WADO-RS and STOW-RS against any DICOMweb server.

The factory checks the configuration and opens nothing; the session is made on first use.
Metadata flows server -> naturalized dicts -> the host's metadata store, a whole series at a
time (:mod:`.metadata`); here are the searches (QIDO-RS, planned by :mod:`.qido`), frames,
bulk data, URLs, image ids, STOW-RS and reject.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs
from datasources import Source
from datasources.errors import (
    ConfigurationError,
    DataSourcesError,
    HTTPError,
    InvalidQueryError,
    NotFoundError,
    NotSupportedError,
)
from datasources.forwarding import ContextThreadPoolExecutor
from datasources.interface import DataSource, IWebApiDataSource
from datasources.naturalize import naturalize_many, paused_gc

from .bulkdata import fix_bulk_data_uri, image_id
from .client import DicomWebClient
from .config import DicomWebConfig
from .metadata import MetadataRetrieve
from .static_list import StaticList

if TYPE_CHECKING:
    from datasources.query import SearchQuery
    from datasources.results import StoreResult

# Creating a source imports what creating it needs; the query parser and matcher, the QIDO
# planner and STOW (with its result types) are imported by the first search or store
# (fsspec's style; bench/bench_host_start.py times a source's creation).

__all__ = ["DicomWebSource", "create_dicomweb_api"]

log = logging.getLogger("datasources.dicomweb")

DEFAULT_INCLUDE = {
    "study": ("StudyDescription", "ModalitiesInStudy"),
    "series": ("SeriesDescription", "SeriesDate", "SeriesTime"),
}
_PAGE = 200


class DicomWebSource(MetadataRetrieve, Source):
    """The implementation behind the interface; one per configured source."""

    HELPERS = ("iter_search", "fetch_series", "series_load_error", "frames", "session", "close")

    def __init__(self, configuration: Mapping[str, Any], host: Any = None) -> None:
        self.config = DicomWebConfig.from_mapping(configuration)
        super().__init__(configuration, host)
        self.name = str(configuration.get("name") or configuration.get("friendlyName") or "dicomweb")
        self.client = DicomWebClient(self.config, self.name)
        self._cache: dict[str, Future[dict[str, dict[str, Any]]]] = {}
        self._cache_lock = threading.Lock()
        self._load_errors: dict[tuple[str, str], DataSourcesError] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.static_list = StaticList(self.client, self.name)
        self._lane: Any = None

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

    def session(self) -> Any:
        """The HTTP session (made on first use), for callers that reuse its auth and pool."""
        return self.client.session

    def close(self) -> None:
        """Close the HTTP session and the event loop lane's idle connections."""
        self.client.close()
        if self._lane is not None:
            self._lane.close()

    def get_config(self) -> dict[str, Any]:
        """The configuration with credentials redacted (``DicomWebConfig.public``)."""
        return self.config.public()

    @property
    def store(self) -> Any:
        if self.host is None:
            raise ConfigurationError("dicomweb: retrieving metadata needs the host (its metadata store)")
        return self.host.metadata_store

    # -- QIDO ---------------------------------------------------------------------------------

    def search_studies(self, filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        from datasources.query import parse_search

        return self.search(parse_search("study", filters, **kwargs))

    def search_series(
        self, study_uid: str, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        from datasources.query import parse_search

        return self.search(parse_search("series", filters, **kwargs), study_uid)

    def search_instances(
        self, study_uid: str, series_uid: str | None = None, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        from datasources.query import parse_search

        return self.search(parse_search("instance", filters, **kwargs), study_uid, series_uid)

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
        from datasources.matching import filter_records

        from .qido import plan_query

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
        from datasources.query import SearchQuery, parse_search

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

    def _frames_url(
        self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Sequence[int] | int
    ) -> tuple[list[int], str]:
        numbers = [frame_numbers] if isinstance(frame_numbers, int) else list(frame_numbers)
        if not numbers or any(not isinstance(n, int) or n < 1 for n in numbers):
            raise InvalidQueryError(f"frame numbers count from 1: {frame_numbers!r}")
        url = (
            f"{self.config.wado_root}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
            f"/frames/{','.join(map(str, numbers))}"
        )
        return numbers, url

    def _frames_of(self, parts: list[Any], numbers: list[int]) -> list[bytes]:
        if len(parts) != len(numbers):
            from datasources.errors import MalformedResponseError

            raise MalformedResponseError(f"{self.name}: asked for {len(numbers)} frames, the answer holds {len(parts)}")
        return [p.frame() for p in parts]  # each labelled with the transfer syntax its part names

    async def frames_async(
        self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Sequence[int] | int = 1
    ) -> list[bytes] | None:
        """:meth:`frames` on the gateway's event loop (:mod:`.aio`); None: call :meth:`frames` in a thread."""
        numbers, url = self._frames_url(study_uid, series_uid, sop_uid, frame_numbers)
        lane = self.lane
        if lane is None:
            return None
        url = self.client.with_root_query(url)
        from .aio import Fallback

        try:
            _, headers, body = await lane.get(url, self._accept("image"))
        except Fallback as why:
            log.debug("%s: frames through the session (%s)", self.name, why)
            return None
        return self._frames_of(self.client.parts_of(body, headers.get("content-type", ""), url), numbers)

    @property
    def lane(self) -> Any:
        """The :class:`~.aio.AsyncLane` of this source (None if httptools, a dependency, is missing)."""
        if self._lane is None:
            try:
                from .aio import AsyncLane  # httptools inside
            except ImportError:
                return None

            c = self.config
            self._lane = AsyncLane(
                name=self.name, headers=self.client.lane_headers, timeout=c.timeout, deadline=c.deadline,
                verify=c.verify, max_decompressed_bytes=c.max_decompressed_bytes,
                max_connections=max(4, c.max_workers * 2),
            )  # fmt: skip
        return self._lane

    def frames(
        self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Sequence[int] | int = 1
    ) -> list[bytes]:
        """Frames (numbered from 1) of an instance, as the server sends them (WADO-RS)."""
        numbers, url = self._frames_url(study_uid, series_uid, sop_uid, frame_numbers)
        try:
            parts = self.client.get_parts(url, self._accept("image"))
        except HTTPError as exc:
            # the numbers were checked here, so a 400 is the server's "no such frame" (Orthanc: out of range)
            if exc.status in (400, 404, 410):
                raise NotFoundError(
                    f"{self.name}: no frames {numbers} of instance {sop_uid} (HTTP {exc.status})"
                ) from None
            raise
        return self._frames_of(parts, numbers)

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
        return parts[0].frame()

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

    def get_image_ids_for_instance(self, instance: Mapping[str, Any], frame: int | None = None) -> str:
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
        """STOW-RS to ``stowRoot`` in batches; refused (``NotSupportedError``) when the configuration
        says ``dicomUploadEnabled: false`` (explicitly: without the key the server decides)."""
        if self.config.raw.get("dicomUploadEnabled") is False:
            raise NotSupportedError("store.dicom", self.name, "the source is configured dicomUploadEnabled: false")
        from .stow import store_instances

        return store_instances(self.client, items, **kwargs)


def create_dicomweb_api(configuration: Mapping[str, Any], host: Any = None) -> DataSource:
    """Factory for ``default.dataSourcesModule.dicomweb``: validates, opens nothing."""
    return IWebApiDataSource.from_source(DicomWebSource(configuration, host))
