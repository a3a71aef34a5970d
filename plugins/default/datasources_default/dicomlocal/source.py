"""A folder of DICOM files as a data source (OHIF's ``dicomlocal``, type ``localApi``).

OHIF's local source only shows files dropped into the browser. This one works like
dicomweb-client's ``DICOMfileClient``: the folder is indexed into SQLite (headers only)
in ``initialize``, searches follow QIDO's matching rules (:mod:`datasources.matching`),
series metadata is read from the files' headers into the host's metadata store, and
pixel data, bulk data and frames are read from the files when asked for.

Image ids are ``dicomfile:<absolute path, percent-encoded>``, with ``?frame=N`` (from 0,
as cornerstone's ``dicomfile:``/``wadouri:`` loaders count) for the frames of multi-frame
instances. Bulk data URIs are the image id with ``?tag=<tag path>``.

The index is :mod:`.index`; ``store.dicom`` and ``reject.series`` are :mod:`.writing`'s.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from datasources import Source
from datasources.errors import (
    BackendError,
    ConfigurationError,
    InvalidQueryError,
    NotFoundError,
    UnsafePathError,
)
from datasources.interface import DataSource, IWebApiDataSource
from datasources.matching import filter_records
from datasources.query import SearchQuery, parse_search
from datasources.results import SeriesLoadTask

from .. import imageids
from .config import LocalConfig
from .files import bulk_value, naturalize_file, read_frames
from .index import IndexReport, LocalIndex, Progress
from .paths import file_uri, safe_path, split_uri
from .writing import Writing, require_uid

__all__ = ["DicomLocalSource", "create_dicomlocal_api"]

log = logging.getLogger("datasources.dicomlocal")


def _exact_uids(query: SearchQuery, key: str) -> list[str] | None:
    """The UIDs a filter names exactly (no wildcard), for an indexed look-up; ``None`` if it cannot narrow."""
    value = query.filters.get(key)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    uids: list[str] = []
    for item in items:
        for part in item.replace(",", "\\").split("\\"):
            part = part.strip()
            if part == "" or "*" in part or "?" in part:
                return None
            uids.append(part)
    return uids


class DicomLocalSource(Writing, Source):
    """The state of one ``dicomlocal`` source: its configuration, index and host."""

    HELPERS = (
        "reindex",
        "problems",
        "index_file",
        "last_report",
        "restore_series",
        "rejected_series",
        "path_for_image_id",
        "read_image_id",
        "close",
    )
    FIRST_FRAME = 0  # dicomfile: ids count frames from 0, as cornerstone's wadouri loader does

    def __init__(self, configuration: Mapping[str, Any], host: Any = None) -> None:
        if configuration is None:
            raise ConfigurationError("dicomlocal: a configuration with root (the folder) is required")
        self.config = LocalConfig.from_mapping(configuration)
        super().__init__(configuration, host)
        self.index = LocalIndex(self.config)
        self._last_report: IndexReport | None = None
        self._store_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def initialize(self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> list[str]:
        """Open the index and (unless ``indexOnInitialize`` is false) bring it up to date."""
        self.index.open()
        if self.config.index_on_initialize:
            self.reindex()
        return self.index.study_uids()

    def reindex(self, progress: Progress | None = None) -> IndexReport:
        self.index.open()
        report = self.index.reindex(progress)
        self._last_report = report
        if report.skipped:
            log.warning(
                "dicomlocal: %d file(s) under %s were skipped (not DICOM, unreadable or unsafe); "
                "data_source.helpers.problems() lists them",
                len(report.skipped),
                self.config.root,
            )
        return report

    def last_report(self) -> IndexReport | None:
        """The report of the latest indexing pass (``None`` before the first)."""
        return self._last_report

    def index_file(self) -> str | None:
        """Where the SQLite index is (``None`` until it is opened)."""
        return str(self.index.index_path) if self.index.index_path else None

    def close(self) -> None:
        """Close the index's connections."""
        self.index.close()

    def _root(self) -> str:
        self.index.open()
        assert self.index.root_real is not None
        return self.index.root_real

    def _path(self, rel_or_abs: str) -> str:
        root = self._root()
        configured = str(self.config.root)
        if configured != root and os.path.isabs(rel_or_abs) and ".." not in rel_or_abs.split("/"):
            # the root as configured may go through a link (/data -> /mnt/disk1): accept paths under it too
            normalized = os.path.normpath(rel_or_abs)
            if normalized == configured or normalized.startswith(configured.rstrip(os.sep) + os.sep):
                rel_or_abs = root + normalized[len(configured) :]
        return safe_path(root, rel_or_abs, follow_symlinks=self.config.follow_symlinks)

    # -- query ---------------------------------------------------------------------------

    def search_studies(self, filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        query = parse_search("study", filters, **kwargs)
        records = self.index.study_records(_exact_uids(query, "StudyInstanceUID"))
        return filter_records(records, query, fuzzy=query.fuzzymatching)

    def search_series(
        self, study_instance_uid: str, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        require_uid(study_instance_uid, "StudyInstanceUID")
        query = parse_search("series", filters, **kwargs)
        return filter_records(self.index.series_records(study_instance_uid), query, fuzzy=query.fuzzymatching)

    def search_instances(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        filters: Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        require_uid(study_instance_uid, "StudyInstanceUID")
        if isinstance(series_instance_uid, Mapping):  # search_instances(study, {filters})
            series_instance_uid, filters = None, series_instance_uid
        query = parse_search("instance", filters, **kwargs)
        records = self.index.instance_records(study_instance_uid, series_instance_uid)
        return filter_records(records, query, fuzzy=query.fuzzymatching)

    # -- metadata ------------------------------------------------------------------------

    def _read_instance(self, study_uid: str, series_uid: str, sop_uid: str, rel: str) -> dict[str, Any]:
        try:
            path = self._path(rel)
        except UnsafePathError as exc:
            raise BackendError(f"dicomlocal: {rel!r} is no longer safe to read ({exc}); re-index the folder") from None
        image_id = file_uri(path)
        try:
            naturalized, _ = naturalize_file(path, image_id)
        except FileNotFoundError:
            raise NotFoundError(f"dicomlocal: {rel!r} was deleted since it was indexed; re-index the folder") from None
        except OSError as exc:
            raise BackendError(f"dicomlocal: cannot read {rel!r}: {exc.strerror or exc}") from None
        except Exception as exc:
            raise BackendError(f"dicomlocal: {rel!r} cannot be parsed any more: {type(exc).__name__}: {exc}") from None
        found = (
            naturalized.get("StudyInstanceUID"),
            naturalized.get("SeriesInstanceUID"),
            naturalized.get("SOPInstanceUID"),
        )
        if found != (study_uid, series_uid, sop_uid):
            raise BackendError(f"dicomlocal: {rel!r} changed since it was indexed; re-index the folder")
        naturalized["url"] = image_id
        naturalized["imageId"] = image_id
        return naturalized

    def _load_series(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        rows = self.index.instance_rows(study_uid, [series_uid])
        return [self._read_instance(study_uid, series_uid, sop, rel) for sop, _s, rel, _ts, _a in rows]

    def series_metadata(
        self,
        study_instance_uid: str,
        *,
        series_instance_uids: Sequence[str] | None = None,
        made_in_client: bool = False,
        return_tasks: bool = False,
    ) -> Any:
        """Read the headers of a study's files into the metadata store (all series, or the ones named).

        Every file is read before the store changes, so a failure leaves the store as it was.
        With ``return_tasks`` the series summaries go to the store at once and one
        :class:`SeriesLoadTask` per series reads its files when started.
        """
        require_uid(study_instance_uid, "StudyInstanceUID")
        studies = self.index.study_records([study_instance_uid])
        if not studies:
            # not the root folder: the message may reach a gateway client, who must not learn server paths
            raise NotFoundError(f"dicomlocal: study {study_instance_uid!r} is not in the data source")
        study = studies[0]
        summaries = self.index.series_records(study_instance_uid)
        if series_instance_uids:
            wanted = list(dict.fromkeys(series_instance_uids))
            known = {s["SeriesInstanceUID"] for s in summaries}
            missing = [uid for uid in wanted if uid not in known]
            if missing:
                raise NotFoundError(f"dicomlocal: series {missing} are not in study {study_instance_uid!r}")
            summaries = [s for s in summaries if s["SeriesInstanceUID"] in set(wanted)]
        store = self.host.metadata_store
        study_fields = {k: v for k, v in study.items() if not k.startswith("NumberOf")}

        if return_tasks:
            if store.get_study(study_instance_uid) is None:
                store.add_study(study_fields)
            store.add_series_metadata(summaries, made_in_client=made_in_client)

            def loader(series_uid: str) -> Any:
                def load() -> list[dict[str, Any]]:
                    instances = self._load_series(study_instance_uid, series_uid)
                    if instances:
                        store.add_instances(instances, made_in_client=made_in_client)
                    return instances

                return load

            return [SeriesLoadTask(s, loader(s["SeriesInstanceUID"])) for s in summaries]

        per_series = [self._load_series(study_instance_uid, s["SeriesInstanceUID"]) for s in summaries]
        if store.get_study(study_instance_uid) is None:
            store.add_study(study_fields)
        store.add_series_metadata(summaries, made_in_client=made_in_client)
        for instances in per_series:
            if instances:
                store.add_instances(instances, made_in_client=made_in_client)
        if not series_instance_uids and hasattr(store, "set_study_loaded"):
            store.set_study_loaded(study_instance_uid)
        return {s["SeriesInstanceUID"]: s for s in summaries}

    # -- bulk data, frames, image ids ----------------------------------------------------

    def bulk_data_uri(self, uri: str | Mapping[str, Any], **_: Any) -> bytes:
        """The bytes behind a BulkDataURI of this source (``?tag=`` an element, ``?frame=`` a frame, else the file)."""
        if isinstance(uri, Mapping):
            uri = uri.get("BulkDataURI")  # type: ignore[assignment]
        if not isinstance(uri, str):
            raise InvalidQueryError("dicomlocal: bulk_data_uri needs a BulkDataURI string")
        location, params = split_uri(uri)
        path = self._path(location)
        try:
            if "frame" in params:
                return read_frames(path, [_frame_number(params["frame"]) + 1])[0]
            if "tag" in params:
                return bulk_value(path, params["tag"])
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise NotFoundError(f"dicomlocal: {uri!r} does not exist") from None
        except IsADirectoryError:
            raise NotFoundError(f"dicomlocal: {uri!r} is a folder") from None

    def frames(
        self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Sequence[int] | int = 1
    ) -> list[bytes]:
        """Frames (numbered from 1, as WADO-RS counts) of an instance, as stored in its file."""
        numbers = [frame_numbers] if isinstance(frame_numbers, int) else list(frame_numbers)
        if not numbers or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in numbers):
            raise InvalidQueryError(f"dicomlocal: frame numbers count from 1: {frame_numbers!r}")
        found = self.index.path_of(sop_uid)
        if found is None or found[:2] != (study_uid, series_uid) or self.index.is_rejected(study_uid, series_uid):
            raise NotFoundError(f"dicomlocal: no instance {study_uid}/{series_uid}/{sop_uid}")
        try:
            return read_frames(self._path(found[2]), numbers, found[2])
        except FileNotFoundError:
            raise NotFoundError(f"dicomlocal: {found[2]!r} was deleted since it was indexed") from None

    def path_for_image_id(self, image_id: str) -> str:
        """The file behind an image id (or bulk data URI) of this source, checked to be inside the root."""
        location, _ = split_uri(image_id)
        return self._path(location)

    def read_image_id(self, image_id: str) -> bytes:
        """The pixel data of the frame an image id names (``?frame=N`` from 0; the first frame otherwise)."""
        location, params = split_uri(image_id)
        frame = _frame_number(params["frame"]) + 1 if "frame" in params else 1
        try:
            return read_frames(self._path(location), [frame])[0]
        except FileNotFoundError:
            raise NotFoundError(f"dicomlocal: {image_id!r} does not exist") from None

    def get_image_ids_for_instance(self, instance: Mapping[str, Any] | None = None, frame: int | None = None) -> str:
        if instance is None:
            raise InvalidQueryError("dicomlocal: get_image_ids_for_instance needs an instance")
        base = instance.get("imageId") or instance.get("url")
        if not base:
            found = self.index.path_of(str(instance.get("SOPInstanceUID")))
            if found is None:
                raise NotFoundError(f"dicomlocal: instance {instance.get('SOPInstanceUID')!r} is not indexed")
            base = file_uri(self._path(found[2]))
        base = str(base).split("?", 1)[0]
        return base if frame is None else f"{base}?frame={int(frame)}"

    def direct_url(
        self, instance: Mapping[str, Any] | None = None, *, url: str | None = None, tag: str = "PixelData", **_: Any
    ) -> str:
        if url:
            return url
        if instance is None:
            raise InvalidQueryError("dicomlocal: direct_url needs an instance or a url")
        value = instance.get(tag)
        if isinstance(value, Mapping) and value.get("BulkDataURI"):
            return str(value["BulkDataURI"])
        if instance.get("imageId") or instance.get("url"):
            return str(instance.get("imageId") or instance.get("url"))
        raise NotFoundError(f"dicomlocal: instance {instance.get('SOPInstanceUID')!r} has no {tag}")

    # -- the rest ------------------------------------------------------------------------

    def get_study_instance_uids(
        self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None
    ) -> list[str]:
        """The route's study UIDs that this folder holds; every indexed study when the route names none."""
        asked = imageids.study_uids_from_route(params, query)
        if not asked:
            return self.held_study_uids()
        held = {r["StudyInstanceUID"] for r in self.index.study_records(asked)}
        return [uid for uid in asked if uid in held]

    def held_study_uids(self) -> list[str]:
        return self.index.study_uids()

    def get_config(self) -> dict[str, Any]:
        """The configuration as ``LocalConfig`` shows it."""
        return self.config.public()

    def problems(self) -> list[dict[str, str]]:
        """Files (and folders) the index skipped, with the reason, as of the last pass."""
        self.index.open()
        return [{"path": p.path, "reason": p.reason} for p in self.index.problems()]


def _frame_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise InvalidQueryError(f"dicomlocal: frame={text!r} is not a number") from None
    if number < 0:
        raise InvalidQueryError(f"dicomlocal: frame={text!r}: frames in image ids count from 0")
    return number


def create_dicomlocal_api(configuration: Mapping[str, Any], host: Any = None) -> DataSource:
    """Factory for ``default.dataSourcesModule.dicomlocal``; checks the configuration, touches no file."""
    return IWebApiDataSource.from_source(DicomLocalSource(configuration, host))
