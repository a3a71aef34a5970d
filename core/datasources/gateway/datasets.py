"""DICOM JSON as the gateway answers it: datasets whose BulkDataURIs point back at the gateway.

Every URL the gateway hands out (RetrieveURL, BulkDataURI) points at the gateway, never at the backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..naturalize import denaturalize, paused_gc
from ..shapes import dicom_json_planned

__all__ = [
    "KeepsBulkData",
    "bulk_rewrite",
    "drop_bulk",
    "drop_nested_bulk",
    "metadata_datasets",
    "metadata_json",
    "rewrite_element",
]


def bulk_rewrite(dataset: dict[str, Any], base: str, path: tuple[str, ...] = ()) -> None:
    """Point every BulkDataURI of a DICOM JSON dataset at the gateway's bulk data route."""
    for tag, element in dataset.items():
        rewrite_element(tag, element, base, path)


def rewrite_element(tag: str, element: dict[str, Any], base: str, path: tuple[str, ...] = ()) -> None:
    """:func:`bulk_rewrite` for one element (and the sequences under it)."""
    if "BulkDataURI" in element:
        element["BulkDataURI"] = f"{base}/bulkdata/{'/'.join((*path, tag))}"
    elif element.get("vr") == "SQ":
        for index, item in enumerate(element.get("Value") or ()):
            if isinstance(item, dict):
                bulk_rewrite(item, base, (*path, tag, str(index)))


class KeepsBulkData(Exception):
    """Raised by :func:`drop_nested_bulk` for an element that is itself a reference: it must go."""


def drop_nested_bulk(tag: str, element: dict[str, Any]) -> None:
    """:func:`drop_bulk` for one element of a dataset written by :func:`~..shapes.dicom_json_planned`."""
    if "BulkDataURI" in element:
        raise KeepsBulkData(tag)
    if element.get("vr") == "SQ":
        for item in element.get("Value") or ():
            if isinstance(item, dict):
                drop_bulk(item)


def drop_bulk(dataset: dict[str, Any]) -> None:
    for tag in [t for t, e in dataset.items() if "BulkDataURI" in e]:
        del dataset[tag]
    for element in dataset.values():
        if element.get("vr") == "SQ":
            for item in element.get("Value") or ():
                if isinstance(item, dict):
                    drop_bulk(item)


def _base(instance: Mapping[str, Any], root: str, study: str) -> str:
    se, sop = instance.get("SeriesInstanceUID"), instance.get("SOPInstanceUID")
    return f"{root}/studies/{instance.get('StudyInstanceUID') or study}/series/{se}/instances/{sop}"


def metadata_datasets(instances: Sequence[Mapping[str, Any]], root: str, study: str) -> list[dict[str, Any]]:
    """DICOM JSON of each instance, its BulkDataURIs pointing at the gateway."""
    out = []
    for instance in instances:
        dataset = denaturalize(instance, skip_unknown=True)
        bulk_rewrite(dataset, _base(instance, root, study))
        out.append(dataset)
    return out


def metadata_json(instances: Sequence[Mapping[str, Any]], root: str, study: str) -> bytes:
    """The WADO-RS metadata answer for ``instances``, as JSON bytes: ``orjson.dumps(metadata_datasets(...))``.

    Each instance is written from the pieces of JSON its shape's plan holds (:mod:`..shapes`), so the
    DICOM JSON dicts of the answer are never built; an instance no plan fits is denaturalized as ever.
    """
    parts = []
    with paused_gc():  # thousands of small objects: the cyclic GC would cost twice the work itself
        for instance in instances:
            base = _base(instance, root, study)
            body = dicom_json_planned(instance, lambda tag, element, base=base: rewrite_element(tag, element, base))
            if body is None:
                dataset = denaturalize(instance, skip_unknown=True)
                bulk_rewrite(dataset, base)
                body = orjson.dumps(dataset)
            parts.append(body)
    return b"[" + b",".join(parts) + b"]"
