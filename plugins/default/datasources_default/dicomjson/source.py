"""A data source over OHIF's DICOM JSON format.

The file holds ``{"studies": [{StudyInstanceUID, ..., "series": [{..., "instances":
[{"metadata": {...}, "url": "dicomweb:..."}]}]}]}`` with naturalized attributes. The
file is read in ``initialize`` (never in the factory); searches apply QIDO's matching
rules from :mod:`datasources.matching`; ``retrieve.series.metadata`` fills the host's
metadata store. Reading and checking the document is :mod:`.document`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from datasources import Source
from datasources.errors import (
    BackendError,
    ConfigurationError,
    NotFoundError,
    UnsafePathError,
)
from datasources.interface import DataSource, IWebApiDataSource
from datasources.matching import filter_records
from datasources.query import parse_search
from datasources.transfer import Frame

from .document import bundled_path, index_document, read_document, study_modalities

KNOWN_KEYS = frozenset({"name", "friendlyName", "url", "path", "bundled", "timeout", "requestOptions"})

_STUDY_FIELDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "AccessionNumber",
    "StudyDescription",
    "StudyID",
    "ReferringPhysicianName",
    "InstitutionName",
)
_SERIES_FIELDS = (
    "SeriesInstanceUID",
    "SeriesNumber",
    "Modality",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "ProtocolName",
)


class DicomJsonSource(Source):
    """One DICOM JSON document, loaded and indexed in ``initialize``; thread-safe."""

    HELPERS = ("reload",)
    READ_ONLY_REASON = "a DICOM JSON file is read-only"
    FIRST_FRAME = 0  # DICOM JSON images are addressed like wadouri: frames count from 0 (as OHIF's dicomjson)

    def __init__(self, configuration: Mapping[str, Any], host: Any) -> None:
        unknown = sorted(set(configuration) - KNOWN_KEYS)
        if unknown:
            import warnings

            warnings.warn(f"dicomjson: unknown configuration keys {unknown}", stacklevel=4)
        given = [k for k in ("url", "path", "bundled") if configuration.get(k)]
        if len(given) > 1:
            raise ConfigurationError(f"dicomjson: give one of url, path or bundled, not {' and '.join(given)}")
        for key in given:
            if not isinstance(configuration[key], str):
                raise ConfigurationError(f"dicomjson: {key} must be a string")
        super().__init__(configuration, host)
        self.config = self.configuration
        self._lock = threading.Lock()
        self._location: str | None = None
        self._studies: dict[str, dict[str, Any]] = {}
        self._client: Any = None

    def http(self, location: str) -> Any:
        """The HTTP client (dicomweb's: one session, its auth, deadline and limits), made on first use.

        ``requestOptions`` (credentials included) apply to the configured ``url``'s origin only; a
        document named by ``?url=`` elsewhere is read without them."""
        with self._lock:
            if self._client is None:
                from ..dicomweb.client import DicomWebClient
                from ..dicomweb.config import DicomWebConfig

                configured = self.config.get("url")
                trusted = isinstance(configured, str) and configured.startswith(("http://", "https://"))
                options = dict(self.config.get("requestOptions") or {}) if trusted else {}
                options.setdefault("timeout", float(self.config.get("timeout", 30)))
                name = str(self.config.get("name") or "dicomjson")
                root = configured if trusted else location
                config = DicomWebConfig.from_mapping({"name": name, "wadoRoot": root, "requestOptions": options})
                self._client = DicomWebClient(config, name)
            return self._client

    # -- loading -----------------------------------------------------------------------

    def _configured_location(self) -> str | None:
        if self.config.get("bundled"):
            return str(bundled_path(self.config["bundled"]))
        return self.config.get("url") or self.config.get("path")

    def initialize(self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> list[str]:
        location = (query or {}).get("url") or self._configured_location()
        if not location:
            raise ConfigurationError("dicomjson: no url, path or bundled data set configured, and no ?url= given")
        self.load(str(location))
        return list(self._studies)

    def reload(self) -> list[str]:
        """Read the configured document again; returns its study UIDs."""
        return self.initialize()

    def held_study_uids(self) -> list[str]:
        return list(self._require())

    def load(self, location: str) -> None:
        document = read_document(location, self)
        studies = index_document(document, location)
        with self._lock:
            self._location = location
            self._studies = studies

    def _require(self) -> dict[str, dict[str, Any]]:
        if self._location is None:
            raise BackendError("dicomjson: the source is not initialized")
        return self._studies

    def study(self, uid: str) -> dict[str, Any]:
        try:
            return self._require()[uid]
        except KeyError:
            # never the document's location: this message reaches gateway clients, who must not learn server paths
            raise NotFoundError(f"dicomjson: study {uid!r} is not in the data source") from None

    # -- records -----------------------------------------------------------------------

    def study_records(self) -> list[dict[str, Any]]:
        out = []
        for study in self._require().values():
            record = {k: study[k] for k in _STUDY_FIELDS if k in study}
            modalities = study_modalities(study)
            record["ModalitiesInStudy"] = modalities
            record["NumberOfStudyRelatedSeries"] = len(study["series"])
            record["NumberOfStudyRelatedInstances"] = sum(len(s["instances"]) for s in study["series"])
            out.append(record)
        return out

    def series_records(self, study_uid: str) -> list[dict[str, Any]]:
        study = self.study(study_uid)
        out = []
        for series in study["series"]:
            record = {"StudyInstanceUID": study_uid}
            record.update({k: series[k] for k in _SERIES_FIELDS if k in series})
            record["NumberOfSeriesRelatedInstances"] = len(series["instances"])
            out.append(record)
        return out

    def instance_records(self, study_uid: str, series_uid: str | None) -> list[dict[str, Any]]:
        study = self.study(study_uid)
        out = []
        for series in study["series"]:
            if series_uid and series["SeriesInstanceUID"] != series_uid:
                continue
            for inst in series["instances"]:
                record = dict(inst.get("metadata", {}))
                record.setdefault("StudyInstanceUID", study_uid)
                record.setdefault("SeriesInstanceUID", series["SeriesInstanceUID"])
                if "url" in inst:
                    record["url"] = inst["url"]
                out.append(record)
        return out

    def full_instances(self, study: Mapping[str, Any], series: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Instances as the store keeps them: metadata + url + imageId + series and study fields."""
        study_fields = {k: v for k, v in study.items() if k != "series"}
        series_fields = {k: v for k, v in series.items() if k != "instances"}
        out = []
        for inst in series["instances"]:
            record = dict(inst.get("metadata", {}))
            record.update(series_fields)
            record.update(study_fields)
            url = inst.get("url")
            if url:
                record["url"] = url
                record["imageId"] = url
            out.append(record)
        return out

    def resolve(self, uri: str) -> str:
        """A URI from the document, made absolute against the document's own location."""
        base = self._location or ""
        for prefix in ("dicomweb:", "wadouri:"):
            if uri.startswith(prefix):
                uri = uri[len(prefix) :]
        if urlsplit(uri).scheme in ("http", "https", "file"):
            return uri
        if urlsplit(base).scheme in ("http", "https"):
            return urljoin(base, uri)
        root = Path(base).resolve().parent
        target = (root / uri).resolve()
        if not target.is_relative_to(root):
            raise UnsafePathError(f"dicomjson: {uri!r} points outside the folder of the JSON file")
        return str(target)

    # -- the interface -----------------------------------------------------------------

    def search_studies(self, filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        q = parse_search("study", filters, **kwargs)
        return filter_records(self.study_records(), q, fuzzy=bool(q.fuzzymatching))

    def search_series(
        self, study_instance_uid: str, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[dict[str, Any]]:
        q = parse_search("series", filters, **kwargs)
        return filter_records(self.series_records(study_instance_uid), q, fuzzy=bool(q.fuzzymatching))

    def search_instances(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        filters: Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        q = parse_search("instance", filters, **kwargs)
        records = self.instance_records(study_instance_uid, series_instance_uid)
        return filter_records(records, q, fuzzy=bool(q.fuzzymatching))

    def series_metadata(
        self,
        study_instance_uid: str,
        *,
        series_instance_uids: list[str] | None = None,
        made_in_client: bool = False,
        return_tasks: bool = False,
    ) -> dict[str, dict[str, Any]]:
        if return_tasks:
            raise ConfigurationError("dicomjson holds every series in memory; return_tasks is for lazy sources")
        study = self.study(study_instance_uid)
        wanted = set(series_instance_uids or ())
        chosen = [s for s in study["series"] if not wanted or s["SeriesInstanceUID"] in wanted]
        if wanted and len(chosen) != len(wanted):
            missing = wanted - {s["SeriesInstanceUID"] for s in chosen}
            raise NotFoundError(f"series {sorted(missing)} not in study {study_instance_uid!r}")
        study_fields = {k: v for k, v in study.items() if k != "series"}
        summaries = []
        for s in chosen:
            summary = {k: v for k, v in s.items() if k != "instances"}
            summary["StudyInstanceUID"] = study_instance_uid
            for k in ("StudyDescription",):
                if k in study_fields:
                    summary.setdefault(k, study_fields[k])
            summaries.append(summary)
        # build every instance first: the store is changed only once all of them are valid
        per_series = [self.full_instances(study, s) for s in chosen]
        store = self.host.metadata_store
        if store.get_study(study_instance_uid) is None:
            store.add_study(study_fields)
        store.add_series_metadata(summaries, made_in_client=made_in_client)
        for instances in per_series:
            if instances:
                store.add_instances(instances, made_in_client=made_in_client)
        return {s["SeriesInstanceUID"]: s for s in summaries}

    def direct_url(
        self,
        instance: Mapping[str, Any] | None = None,
        *,
        url: str | None = None,
        tag: str = "PixelData",
        **_: Any,
    ) -> str:
        if url:
            return url
        if instance is None:
            raise ConfigurationError("direct_url needs an instance or a url")
        value = instance.get(tag)
        if isinstance(value, Mapping) and value.get("BulkDataURI"):
            return self.resolve(value["BulkDataURI"])
        if instance.get("url"):
            return self.resolve(instance["url"])
        raise NotFoundError(f"instance {instance.get('SOPInstanceUID')!r} has no URL for {tag}")

    def bulk_data_uri(self, bulk_data_uri: str | Mapping[str, Any], *, tag: str = "PixelData", **_: Any) -> bytes:
        """The bytes behind a BulkDataURI (the string or ``{"BulkDataURI": ...}``, as other sources take it);
        a Part-10 file gives the value of ``tag`` in it."""
        if isinstance(bulk_data_uri, Mapping):
            bulk_data_uri = bulk_data_uri["BulkDataURI"]
        return _value_of(self._read_bulk(bulk_data_uri), tag, bulk_data_uri)

    def _read_bulk(self, bulk_data_uri: str) -> bytes:
        target = self.resolve(bulk_data_uri)
        if urlsplit(target).scheme in ("http", "https"):
            return self.http(target).request("GET", target).content
        path = Path(target[7:] if target.startswith("file://") else target)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"bulk data {bulk_data_uri!r} not found") from None

    def get_image_ids_for_instance(self, instance: Mapping[str, Any], frame: int | None = None) -> str:
        url = instance.get("url") or instance.get("imageId")
        if not url:
            raise NotFoundError(f"instance {instance.get('SOPInstanceUID')!r} has no url")
        if frame is None:
            return str(url)
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}frame={int(frame)}"

    def get_config(self) -> dict[str, Any]:
        """The configuration, credentials in ``requestOptions`` masked."""
        config = {"dicomUploadEnabled": False, **self.config}
        if isinstance(config.get("requestOptions"), Mapping):
            from ..dicomweb.auth import public_auth

            options = dict(config["requestOptions"])
            if "auth" in options:
                options["auth"] = public_auth(options["auth"])
            if isinstance(options.get("headers"), Mapping):
                options["headers"] = {k: "***" for k in options["headers"]}
            config["requestOptions"] = options
        return config


def _value_of(data: bytes, tag: str, uri: str) -> bytes:
    if len(data) < 132 or data[128:132] != b"DICM":
        return data  # raw bulk data
    from io import BytesIO

    import pydicom

    ds = pydicom.dcmread(BytesIO(data))
    if tag not in ds:
        raise NotFoundError(f"{uri!r} is a DICOM file without {tag}")
    value = ds[tag].value
    if not isinstance(value, bytes | bytearray):
        return str(value).encode()
    ts = ds.file_meta.get("TransferSyntaxUID") if tag in ("PixelData", "7FE00010") else None
    return Frame(value, str(ts)) if ts is not None else bytes(value)  # pixel data: the file's transfer syntax


def create_dicomjson_api(configuration: Mapping[str, Any], host: Any = None) -> DataSource:
    """Factory for ``default.dataSourcesModule.dicomjson``; reads nothing until ``initialize``."""
    return IWebApiDataSource.from_source(DicomJsonSource(configuration, host))
