"""The imagefolder source: a folder of PNG/JPEG images and a CSV manifest, as a DICOM data source.

Configuration: ``root`` (the folder), ``manifest`` (default ``manifest.csv`` in it),
``friendlyName``. The factory reads nothing; ``initialize`` reads the manifest and the images'
headers. Searches use the shared QIDO rules; frames are the images' pixels in DICOM order.
Read-only: ``store.dicom`` and ``reject.series`` raise ``NotSupportedError``.

Helpers other extensions can call: ``reload()``, ``problems()``, ``image_path(sop_uid)``.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasources import Source
from datasources.errors import ConfigurationError, InvalidQueryError, NotFoundError
from datasources.interface import DataSource, IWebApiDataSource
from datasources.matching import filter_records
from datasources.query import parse_search

from .manifest import ManifestProblem, read_manifest
from .mapping import Catalog, build_catalog, frame_bytes

__all__ = ["ImageFolderSource", "create_imagefolder_api"]

log = logging.getLogger("datasources.imagefolder")

KNOWN_KEYS = frozenset({"root", "manifest", "friendlyName", "name"})
IMAGE_ID_PREFIX = "imagefolder:"


class ImageFolderSource(Source):
    """One folder and its manifest; the catalog is read in ``initialize`` (or on first use)."""

    HELPERS = ("reload", "problems", "image_path")
    READ_ONLY_REASON = "an image folder is read-only"

    def __init__(self, configuration: Mapping[str, Any], host: Any = None) -> None:
        unknown = sorted(set(configuration) - KNOWN_KEYS)
        if unknown:
            warnings.warn(f"imagefolder: unknown configuration keys {unknown} are ignored", stacklevel=4)
        root = configuration.get("root")
        if not isinstance(root, str) or not root:
            raise ConfigurationError("imagefolder: 'root' (the folder of images) is required and must be a string")
        manifest = configuration.get("manifest", "manifest.csv")
        if not isinstance(manifest, str) or not manifest:
            raise ConfigurationError("imagefolder: 'manifest' must be a file name or path")
        super().__init__(configuration, host)
        self.root = Path(root).expanduser()
        self.manifest = self.root / manifest
        self.config = self.configuration
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------------

    def initialize(self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> list[str]:
        """Read the manifest (again); returns every study UID in it."""
        self.reload()
        return list(self.catalog.studies)

    def held_study_uids(self) -> list[str]:
        return list(self.catalog.studies)

    def reload(self) -> list[ManifestProblem]:
        """Read the manifest again; returns its problems (each also logged as a warning)."""
        rows, problems = read_manifest(self.manifest)
        catalog = build_catalog(rows, problems, IMAGE_ID_PREFIX)
        for problem in catalog.problems:
            log.warning("imagefolder %s: %s", self.manifest, problem)
        with self._lock:
            self._catalog = catalog
        return list(catalog.problems)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self.reload()
        assert self._catalog is not None
        return self._catalog

    def problems(self) -> list[ManifestProblem]:
        return list(self.catalog.problems)

    def image_path(self, sop_uid: str) -> Path:
        try:
            return self.catalog.paths[sop_uid]
        except KeyError:
            raise NotFoundError(f"imagefolder: no image with SOPInstanceUID {sop_uid!r}") from None

    # -- query --------------------------------------------------------------------------------

    def search_studies(self, filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        q = parse_search("study", filters, **kwargs)
        return [dict(s) for s in filter_records(self.catalog.studies.values(), q)]

    def _study(self, study_uid: str) -> dict[str, Any]:
        study = self.catalog.studies.get(study_uid)
        if study is None:
            raise NotFoundError(f"imagefolder: no study {study_uid!r} in {self.manifest}")
        return study

    def search_series(
        self, study_uid: str, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        q = parse_search("series", filters, **kwargs)
        self._study(study_uid)
        return [dict(s) for s in filter_records(self.catalog.series_of(study_uid), q)]

    def search_instances(
        self, study_uid: str, series_uid: str | None = None, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        q = parse_search("instance", filters, **kwargs)
        self._study(study_uid)
        series = [s for s in self.catalog.series_of(study_uid) if series_uid in (None, s["SeriesInstanceUID"])]
        records = [i for s in series for i in self.catalog.instances_of(s["SeriesInstanceUID"])]
        return [dict(i) for i in filter_records(records, q)]

    # -- retrieve -----------------------------------------------------------------------------

    def series_metadata(
        self,
        study_uid: str,
        *,
        series_instance_uids: Sequence[str] | None = None,
        made_in_client: bool = False,
        return_tasks: bool = False,
    ) -> dict[str, dict[str, Any]]:
        if return_tasks:
            raise ConfigurationError("imagefolder holds every series in memory; return_tasks is for lazy sources")
        study = self._study(study_uid)
        chosen = self.catalog.series_of(study_uid)
        if series_instance_uids:
            wanted = set(series_instance_uids)
            chosen = [s for s in chosen if s["SeriesInstanceUID"] in wanted]
            if len(chosen) != len(wanted):
                raise NotFoundError(f"imagefolder: series {sorted(wanted)} not all in study {study_uid!r}")
        per_series = [[dict(i) for i in self.catalog.instances_of(s["SeriesInstanceUID"])] for s in chosen]
        store = self.host.metadata_store
        store.add_study(study)
        store.add_series_metadata([dict(s) for s in chosen], made_in_client=made_in_client)
        for instances in per_series:
            if instances:
                store.add_instances(instances, made_in_client=made_in_client)
        store.set_study_loaded(study_uid)
        return {s["SeriesInstanceUID"]: dict(s) for s in chosen}

    def frames(
        self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Sequence[int] | int = 1
    ) -> list[bytes]:
        """The image's one frame (numbered 1): a baseline JPEG as it is, else native pixels; labelled."""
        numbers = [frame_numbers] if isinstance(frame_numbers, int) else list(frame_numbers)
        if not numbers or any(not isinstance(n, int) or n < 1 for n in numbers):
            raise InvalidQueryError(f"frame numbers count from 1: {frame_numbers!r}")
        if any(n != 1 for n in numbers):
            raise NotFoundError(f"imagefolder: an image has one frame, numbered 1; asked for {numbers}")
        instance = self.catalog.instances.get(sop_uid)
        if instance is None or instance["SeriesInstanceUID"] != series_uid or instance["StudyInstanceUID"] != study_uid:
            raise NotFoundError(f"imagefolder: no instance {sop_uid!r} in series {series_uid!r}")
        data = frame_bytes(self.image_path(sop_uid), instance)
        return [data for _ in numbers]

    def bulk_data_uri(self, uri: str | Mapping[str, Any], **_: Any) -> bytes:
        if isinstance(uri, Mapping):
            uri = uri["BulkDataURI"]
        if not uri.startswith(IMAGE_ID_PREFIX):
            raise NotFoundError(f"imagefolder: {uri!r} is not one of this source's bulk data URIs")
        instance = self.catalog.instances.get(uri[len(IMAGE_ID_PREFIX) :].split("?")[0])
        if instance is None:
            raise NotFoundError(f"imagefolder: no image for {uri!r}")
        return frame_bytes(self.image_path(instance["SOPInstanceUID"]), instance)

    def direct_url(self, instance: Mapping[str, Any] | None = None, *, url: str | None = None, **_: Any) -> str:
        """The image file itself, as a ``file://`` URL."""
        if url:
            return url
        if instance is None:
            raise InvalidQueryError("direct_url needs an instance or a url")
        return self.image_path(str(instance.get("SOPInstanceUID"))).as_uri()

    def get_image_ids_for_instance(self, instance: Mapping[str, Any], frame: int | None = None) -> str:
        image_id = instance.get("imageId") or f"{IMAGE_ID_PREFIX}{instance['SOPInstanceUID']}"
        return str(image_id) if frame is None else f"{image_id}?frame={frame}"


def create_imagefolder_api(configuration: Mapping[str, Any], host: Any = None) -> DataSource:
    """Factory for ``imagefolder.dataSourcesModule.imagefolder``: checks the configuration, reads nothing."""
    return IWebApiDataSource.from_source(ImageFolderSource(configuration, host))
