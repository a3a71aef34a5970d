"""The layout of an exported static DICOMweb tree, and the DICOM JSON written into it.

::

    studies/index.json.gz                                      the study list (QIDO rows), written last
    studies/{st}/index.json.gz                                 the study's own row
    studies/{st}/export.json                                   counts and content hashes (incremental runs)
    studies/{st}/series/index.json.gz                          the series list
    studies/{st}/series/{se}/metadata.gz                       WADO-RS metadata of the series
    studies/{st}/series/{se}/instances/index.json.gz           the instance list
    studies/{st}/series/{se}/instances/{sop}/frames/{n}        one frame, bytes as stored
    studies/{st}/series/{se}/thumbnail                         a JPEG of the series' first image
    studies/{st}/bulkdata/{se}/{sop}/{tag}[.{item}.{tag}]...   bulk data (``bulkdata/...`` in the metadata)

Every BulkDataURI is relative (``bulkdata/...``, or ``series/.../frames/1`` for PixelData),
resolved against ``{wadoRoot}/studies/{st}/``, so the tree can move. Each instance's transfer
syntax is its ``AvailableTransferSyntaxUID`` (0008,3002) in the metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import UnsafePathError
from ..naturalize import denaturalize, keyword_for_tag

__all__ = [
    "STUDY_LIST",
    "BulkItem",
    "InstancePlan",
    "instance_dataset",
    "series_dir",
    "study_dir",
    "study_row",
]

STUDY_LIST = "studies/index.json.gz"
PIXEL_DATA = "7FE00010"
AVAILABLE_TS = "00083002"


def segment(uid: Any, what: str) -> str:
    """A UID as one path segment of the tree; anything that could leave its folder is refused."""
    text = str(uid or "")
    if not text or text in (".", "..") or any(c in text for c in "/\\\0:?#%") or len(text) > 200:
        raise UnsafePathError(f"{what} {text!r} cannot name a file of the export tree")
    return text


def study_dir(study: str) -> str:
    return f"studies/{segment(study, 'StudyInstanceUID')}"


def series_dir(study: str, series: str) -> str:
    return f"{study_dir(study)}/series/{segment(series, 'SeriesInstanceUID')}"


def frame_path(study: str, series: str, sop: str, number: int) -> str:
    return f"{series_dir(study, series)}/instances/{segment(sop, 'SOPInstanceUID')}/frames/{number}"


@dataclass
class BulkItem:
    """One bulk data value to copy: where the source has it, where the tree puts it."""

    uri: str  # the source's BulkDataURI
    keyword: str  # the tag's keyword (sources that read by tag want it)
    target: str  # path in the tree


@dataclass
class InstancePlan:
    """What the write phase needs of one instance (the metadata itself is read again then)."""

    sop: str
    frames: int
    has_pixels: bool
    transfer_syntax: str | None
    bulk: list[BulkItem] = field(default_factory=list)


def _rewrite(
    dataset: dict[str, Any], study: str, series: str, sop: str, plan: InstancePlan, trail: tuple[str, ...] = ()
) -> None:
    """Make every BulkDataURI relative to the tree, noting the copies the write phase makes."""
    for tag, element in dataset.items():
        if "BulkDataURI" in element:
            if tag == PIXEL_DATA and not trail:
                plan.has_pixels = True
                element["BulkDataURI"] = f"series/{series}/instances/{sop}/frames/1"
                continue
            name = ".".join((*trail, tag))
            target = f"{study_dir(study)}/bulkdata/{segment(series, 'SeriesInstanceUID')}/{sop}/{name}"
            plan.bulk.append(BulkItem(str(element["BulkDataURI"]), keyword_for_tag(tag) or tag, target))
            element["BulkDataURI"] = target.split("/", 2)[2]  # relative to the study: bulkdata/...
        elif element.get("vr") == "SQ":
            for index, item in enumerate(element.get("Value") or ()):
                if isinstance(item, dict):
                    _rewrite(item, study, series, sop, plan, (*trail, tag, str(index)))
        elif tag == PIXEL_DATA and not trail and "InlineBinary" in element:
            plan.has_pixels = True


def instance_dataset(instance: Mapping[str, Any], study: str, series: str) -> tuple[dict[str, Any], InstancePlan]:
    """An instance's DICOM JSON as the tree holds it, and its plan; the same input gives the same output."""
    from ..gateway.frames import frame_count, transfer_syntax_of

    sop = segment(instance.get("SOPInstanceUID"), "SOPInstanceUID")
    dataset = denaturalize(instance, skip_unknown=True)
    dataset.pop("00081190", None)  # RetrieveURL points at the source; the tree has its own URLs
    plan = InstancePlan(sop, frame_count(instance), False, transfer_syntax_of(instance))
    _rewrite(dataset, study, series, sop, plan)
    if not plan.has_pixels and instance.get("PixelData") is not None:
        plan.has_pixels = True  # raw bytes in a naturalized instance (denaturalize leaves them out)
    if plan.transfer_syntax and AVAILABLE_TS not in dataset:
        dataset[AVAILABLE_TS] = {"vr": "UI", "Value": [plan.transfer_syntax]}
    return dataset, plan


def dataset_digest(dataset: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(orjson.dumps(dataset, option=orjson.OPT_SORT_KEYS)).digest()


def row_dataset(row: Mapping[str, Any]) -> dict[str, Any]:
    """A QIDO row (naturalized) as DICOM JSON without the source's URLs."""
    dataset = denaturalize(row, skip_unknown=True)
    dataset.pop("00081190", None)
    for tag in [t for t, e in dataset.items() if "BulkDataURI" in e]:
        del dataset[tag]
    return dataset


def study_row(row: Mapping[str, Any], series: int, instances: int, modalities: list[str]) -> dict[str, Any]:
    """The study's row, its counts (and modalities, when the source gives none) from what was exported."""
    dataset = row_dataset(row)
    dataset["00201206"] = {"vr": "IS", "Value": [series]}
    dataset["00201208"] = {"vr": "IS", "Value": [instances]}
    if "00080061" not in dataset and modalities:
        dataset["00080061"] = {"vr": "CS", "Value": modalities}
    return dict(sorted(dataset.items()))


def series_row(row: Mapping[str, Any], study: str, instances: int) -> dict[str, Any]:
    dataset = row_dataset(row)
    dataset.setdefault("0020000D", {"vr": "UI", "Value": [study]})
    dataset["00201209"] = {"vr": "IS", "Value": [instances]}
    return dict(sorted(dataset.items()))


def row_uid(dataset: Mapping[str, Any], tag: str) -> str | None:
    value = (dataset.get(tag) or {}).get("Value") or [None]
    return value[0] if isinstance(value[0], str) else None
