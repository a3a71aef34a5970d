"""DICOM JSON as the gateway answers it: datasets whose BulkDataURIs point back at the gateway.

Every URL the gateway hands out (RetrieveURL, BulkDataURI) points at the gateway, never at the backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..errors import MalformedResponseError
from ..naturalize import MAX_DEPTH, denaturalize, paused_gc
from ..shapes import dicom_json_planned

__all__ = [
    "KeepsBulkData",
    "backend_metadata_json",
    "bulk_rewrite",
    "drop_bulk",
    "drop_nested_bulk",
    "metadata_datasets",
    "metadata_json",
    "rewrite_element",
]


def _bulk_url(base: str, path: tuple[str, ...], tag: str) -> str:
    """The gateway's bulk data route for an element: ``{instance}/bulkdata/{tag[/item/tag...]}``."""
    return f"{base}/bulkdata/{'/'.join((*path, tag))}"


def bulk_rewrite(dataset: dict[str, Any], base: str, path: tuple[str, ...] = ()) -> None:
    """Point every BulkDataURI of a DICOM JSON dataset at the gateway's bulk data route."""
    for tag, element in dataset.items():
        rewrite_element(tag, element, base, path)


def rewrite_element(tag: str, element: dict[str, Any], base: str, path: tuple[str, ...] = ()) -> None:
    """:func:`bulk_rewrite` for one element (and the sequences under it)."""
    if "BulkDataURI" in element:
        element["BulkDataURI"] = _bulk_url(base, path, tag)
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


def _uid(dataset: Mapping[str, Any], tag: str) -> str | None:
    element = dataset.get(tag)
    value = element.get("Value") if isinstance(element, dict) else None
    return value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None


def _point_at_gateway(
    dataset: dict[str, Any], base: str, path: tuple[str, ...], changed: list[tuple[dict[str, Any], Any]], depth: int
) -> None:
    """:func:`bulk_rewrite` on a backend's DICOM JSON, checking its shape; each old URI kept in ``changed``."""
    for tag, element in dataset.items():
        if type(element) is not dict:
            raise MalformedResponseError(f"element {'/'.join((*path, tag))} is not a JSON object")
        if "BulkDataURI" in element:
            changed.append((element, element["BulkDataURI"]))
            element["BulkDataURI"] = _bulk_url(base, path, tag)
        elif element.get("vr") == "SQ":
            items = element.get("Value") or ()
            if type(items) is not list or depth >= MAX_DEPTH:
                raise MalformedResponseError(f"sequence {'/'.join((*path, tag))} is not a list of items")
            for index, item in enumerate(items):
                if type(item) is not dict:
                    raise MalformedResponseError(f"an item of sequence {'/'.join((*path, tag))} is not a JSON object")
                _point_at_gateway(item, base, (*path, tag, str(index)), changed, depth + 1)


def backend_metadata_json(datasets: Sequence[dict[str, Any]], root: str, study: str) -> bytes:
    """The WADO-RS metadata answer made from the backend's own DICOM JSON, as JSON bytes.

    Only the BulkDataURIs change (pointed at the gateway, as :func:`metadata_json` points them);
    ``datasets`` is left as it came, so the store is filled from it afterwards. Skipping the
    store's round trip (naturalize, then write it back) is what keeps a cold answer close to
    the backend's own time; values are written as the backend wrote them.
    """
    changed: list[tuple[dict[str, Any], Any]] = []
    try:
        for dataset in datasets:
            sop = _uid(dataset, "00080018")
            if sop is None:
                raise MalformedResponseError(f"an instance of study {study} has no SOPInstanceUID")
            series = _uid(dataset, "0020000E")
            base = f"{root}/studies/{_uid(dataset, '0020000D') or study}/series/{series}/instances/{sop}"
            _point_at_gateway(dataset, base, (), changed, 0)
        try:
            return orjson.dumps(datasets)
        except orjson.JSONEncodeError as exc:
            raise MalformedResponseError(f"study {study}: the backend's metadata cannot be written: {exc}") from None
    finally:
        for element, uri in changed:
            element["BulkDataURI"] = uri
