"""BulkDataURI resolution as OHIF's ``fixBulkDataURI`` does it, and image ids in OHIF's forms.

Order: ``transform(uri)``; a ``startsWith`` prefix replaced by ``prefixWith`` (a server behind a
reverse proxy reports its inside address); then a relative URI is resolved against the study
(``series/...``, ``bulkdata/...``, or ``relativeResolution: "studies"``) or the series
(``instances/...``, ``../...``, or ``relativeResolution: "series"``); a server-relative
``/...`` gets the origin of ``wadoRoot``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .config import DicomWebConfig

__all__ = ["fix_bulk_data_uri", "fix_instance_bulk_data", "image_id"]


def fix_bulk_data_uri(uri: str, study_uid: str, series_uid: str | None, config: DicomWebConfig) -> str:
    bulk = config.bulk
    if bulk.transform is not None:
        uri = bulk.transform(uri)
    if bulk.starts_with and uri.startswith(bulk.starts_with):
        uri = bulk.prefix_with + uri[len(bulk.starts_with) :]
    if uri.startswith(("http://", "https://")):
        return uri
    root = config.wado_root
    if uri.startswith("/"):
        parts = urlsplit(root)
        return f"{parts.scheme}://{parts.netloc}{uri}"
    study_base = f"{root}/studies/{study_uid}"
    if uri.startswith(("series/", "bulkdata/")) or (
        bulk.relative_resolution == "studies" and not uri.startswith(("instances/", "../"))
    ):
        return f"{study_base}/{uri}"
    if series_uid is None:
        return f"{study_base}/{uri}"
    return f"{study_base}/series/{series_uid}/{uri}"


def _fix_value(value: Any, study_uid: str, series_uid: str | None, config: DicomWebConfig) -> None:
    if value.__class__ is dict:
        uri = value.get("BulkDataURI")
        if uri is not None:
            value["BulkDataURI"] = fix_bulk_data_uri(uri, study_uid, series_uid, config)
    elif value.__class__ is list and value and value[0].__class__ is dict:
        for item in value:  # a sequence: its items are datasets
            for inner in item.values():
                _fix_value(inner, study_uid, series_uid, config)


def fix_instance_bulk_data(instance: dict[str, Any], config: DicomWebConfig) -> None:
    """Rewrite every BulkDataURI of a naturalized instance in place (sequences included)."""
    study_uid = instance.get("StudyInstanceUID", "")
    series_uid = instance.get("SeriesInstanceUID")
    for value in instance.values():
        if value.__class__ is dict or value.__class__ is list:
            _fix_value(value, study_uid, series_uid, config)


def image_id(instance: Mapping[str, Any], config: DicomWebConfig, frame: int | None = None) -> str:
    """``wadors:{wadoRoot}/studies/../series/../instances/../frames/N`` or ``dicomweb:{wadoUriRoot}?...``."""
    study, series, sop = instance["StudyInstanceUID"], instance["SeriesInstanceUID"], instance["SOPInstanceUID"]
    if config.image_rendering == "wadors":
        return f"wadors:{config.wado_root}/studies/{study}/series/{series}/instances/{sop}/frames/{frame or 1}"
    uri = (
        f"dicomweb:{config.wado_uri_root}?requestType=WADO&studyUID={study}&seriesUID={series}"
        f"&objectUID={sop}&contentType=application/dicom&transferSyntax=*"
    )
    return f"{uri}&frame={frame}" if frame is not None else uri
