"""Reading a DICOM JSON document: from a file, an http(s) URL or a bundled sample, checked and indexed.

:func:`read_document` gives the parsed JSON (typed errors for a missing file, an
unreachable URL or invalid JSON); :func:`index_document` checks the shape (every study and
series has its UID, ``instances`` are lists) and indexes the studies by StudyInstanceUID.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from datasources.errors import (
    BackendError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
)
from datasources.values import conform

__all__ = ["bundled_path", "index_document", "read_document", "study_modalities"]


def bundled_path(name: str) -> Path:
    """The file of a bundled sample (``bundled: NAME``); the error lists the bundled ones."""
    root = resources.files("datasources_default.dicomjson") / "sample"
    candidate = root / f"{name}.json"
    if not candidate.is_file():
        available = sorted(p.name.removesuffix(".json") for p in root.iterdir() if p.name.endswith(".json"))
        raise ConfigurationError(f"no bundled DICOM JSON {name!r}; bundled: {', '.join(available)}")
    return Path(str(candidate))


def read_document(location: str, backend: Any) -> Any:
    """The JSON at ``location``; an http(s) one read with ``backend.http(location)`` (its client)."""
    import orjson

    scheme = urlsplit(location).scheme
    if scheme in ("http", "https"):
        body = backend.http(location).request("GET", location, accept="application/json").content
    else:
        path = Path(location[7:] if scheme == "file" else location)
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"dicomjson: file {str(path)!r} does not exist") from None
        except OSError as exc:
            raise BackendError(f"dicomjson: cannot read {str(path)!r}: {exc.strerror}") from exc
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponseError(f"dicomjson: {location} is not valid JSON: {exc}") from None


def index_document(document: Any, location: str) -> dict[str, dict[str, Any]]:
    if not isinstance(document, Mapping) or not isinstance(document.get("studies"), list):
        raise MalformedResponseError(f"dicomjson: {location} has no 'studies' list")
    studies: dict[str, dict[str, Any]] = {}
    for i, study in enumerate(document["studies"]):
        uid = study.get("StudyInstanceUID") if isinstance(study, Mapping) else None
        if not uid:
            raise MalformedResponseError(f"dicomjson: {location}: studies[{i}] has no StudyInstanceUID")
        series_list = study.get("series") or []
        for j, series in enumerate(series_list):
            if not isinstance(series, Mapping) or not series.get("SeriesInstanceUID"):
                raise MalformedResponseError(
                    f"dicomjson: {location}: studies[{i}].series[{j}] has no SeriesInstanceUID"
                )
            if not isinstance(series.get("instances", []), list):
                raise MalformedResponseError(f"dicomjson: {location}: studies[{i}].series[{j}].instances is not a list")
        study = {
            **conform({k: v for k, v in study.items() if k != "series"}),
            "series": [_conformed(s) for s in series_list],
        }
        studies[uid] = study
    return studies


def _conformed(series: Mapping[str, Any]) -> dict[str, Any]:
    """A series of the document, its fields and its instances' metadata brought to the value contract."""
    out = conform({k: v for k, v in series.items() if k != "instances"})
    out["instances"] = [
        {**inst, "metadata": conform(inst["metadata"])}
        if isinstance(inst, Mapping) and isinstance(inst.get("metadata"), Mapping)
        else inst
        for inst in series.get("instances") or []
    ]
    return out


def study_modalities(study: Mapping[str, Any]) -> list[str]:
    """ModalitiesInStudy: the ones the study gives, then its series', each once."""
    found: list[str] = []
    given = study.get("ModalitiesInStudy") or study.get("Modalities")
    if isinstance(given, str):
        given = [m for m in given.replace("/", "\\").split("\\") if m]
    for m in list(given or []) + [s.get("Modality") for s in study["series"]]:
        if m and m not in found:
            found.append(m)
    return found
