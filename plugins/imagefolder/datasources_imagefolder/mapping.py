"""Manifest rows -> DICOM's native (naturalized) format: studies, series, instances, frames.

- One study per exam: a patient on a date (``patient_id`` + ``exam_date``).
- One series per modality and description within it.
- One Secondary Capture instance per image, its pixel attributes read from the image header.

UIDs are ``2.25.<uuid5>`` of those keys (the image's path for an instance), so they are the same
on every run and whatever the order of the manifest's rows.
"""

from __future__ import annotations

import array
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasources.transfer import EXPLICIT_LE, Frame, metadata_transfer_syntax

from .manifest import ManifestProblem, ManifestRow

__all__ = ["Catalog", "build_catalog", "frame_bytes", "uid"]

NAMESPACE = uuid.UUID("4f1c2d9e-7b3a-5e6f-8a9b-0c1d2e3f4a5b")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def uid(*key: str) -> str:
    return f"2.25.{uuid.uuid5(NAMESPACE, chr(31).join(key)).int}"


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _baseline_jpeg(image: Any) -> bool:
    """A JPEG DICOM can carry as JPEG Baseline: 8-bit, sequential (not progressive), grey or YCbCr."""
    return (
        image.format == "JPEG"
        and image.mode in ("L", "RGB")
        and not image.info.get("progressive")
        and not image.info.get("progression")
        and "adobe_transform" not in image.info
    )


def pixel_attributes(path: Path) -> dict[str, Any]:
    """Rows, Columns and the pixel module, from the header alone (Pillow decodes nothing here).

    A baseline JPEG file is served as it is, as JPEG Baseline (``TransferSyntaxUID`` 1.2.840.10008.1.2.4.50,
    colour as ``YBR_FULL_422`` when subsampled, as DICOM names a JFIF's YCbCr); any other image
    as native pixels.
    """
    from PIL import Image

    with Image.open(path) as image:
        width, height, mode = image.width, image.height, image.mode
        jpeg = _baseline_jpeg(image)
        sampling = _sampling(image) if jpeg else -1
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        samples, photometric, bits = 1, "MONOCHROME2", 16
    elif mode in ("L", "1", "LA"):
        samples, photometric, bits = 1, "MONOCHROME2", 8
    else:  # RGB, RGBA, P (palette), CMYK, YCbCr: served as RGB
        samples, photometric, bits = 3, "RGB", 8
    if jpeg and samples == 3:
        photometric = "YBR_FULL" if sampling == 0 else "YBR_FULL_422"
    attributes: dict[str, Any] = {
        "Rows": height,
        "Columns": width,
        "SamplesPerPixel": samples,
        "PhotometricInterpretation": photometric,
        "BitsAllocated": bits,
        "BitsStored": bits,
        "HighBit": bits - 1,
        "PixelRepresentation": 0,
    }
    if samples == 3:
        attributes["PlanarConfiguration"] = 0
    if jpeg:
        attributes["TransferSyntaxUID"] = JPEG_BASELINE
        attributes["LossyImageCompression"] = "01"
    return attributes


def _sampling(image: Any) -> int:
    from PIL import JpegImagePlugin

    try:
        return int(JpegImagePlugin.get_sampling(image))
    except Exception:
        return -1


def frame_bytes(path: Path, attributes: dict[str, Any]) -> Frame:
    """The image's one frame: a baseline JPEG file as it is, anything else as native pixel data."""
    if metadata_transfer_syntax(attributes) == JPEG_BASELINE:
        return Frame(path.read_bytes(), JPEG_BASELINE)
    return Frame(_native(path, attributes), EXPLICIT_LE)


def _native(path: Path, attributes: dict[str, Any]) -> bytes:
    """The image's pixels as DICOM native pixel data (little endian, RGB interleaved)."""
    from PIL import Image

    with Image.open(path) as image:
        if attributes["SamplesPerPixel"] == 3:
            return image.convert("RGB").tobytes()
        if attributes["BitsAllocated"] == 16:
            if image.mode in ("I;16", "I;16L"):
                return image.tobytes()  # already 16-bit little endian
            # "I" (32-bit) or "I;16B": pack each value into 16 bits, little endian
            values = array.array("H", (min(max(int(v), 0), 0xFFFF) for v in image.getdata()))
            if sys.byteorder == "big":
                values.byteswap()
            return values.tobytes()
        return image.convert("L").tobytes()


@dataclass
class Catalog:
    """Everything the manifest describes, indexed by UID."""

    studies: dict[str, dict[str, Any]] = field(default_factory=dict)
    series: dict[str, dict[str, Any]] = field(default_factory=dict)  # SeriesInstanceUID -> series record
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)  # SOPInstanceUID -> instance
    paths: dict[str, Path] = field(default_factory=dict)  # SOPInstanceUID -> image file
    problems: list[ManifestProblem] = field(default_factory=list)

    def series_of(self, study_uid: str) -> list[dict[str, Any]]:
        return [s for s in self.series.values() if s["StudyInstanceUID"] == study_uid]

    def instances_of(self, series_uid: str) -> list[dict[str, Any]]:
        return [i for i in self.instances.values() if i["SeriesInstanceUID"] == series_uid]


def build_catalog(rows: Iterable[ManifestRow], problems: list[ManifestProblem], image_id_prefix: str) -> Catalog:
    catalog = Catalog(problems=list(problems))
    ordered = sorted(rows, key=lambda r: (r.patient_id, r.exam_date, r.modality, r.description, r.relative_path))
    for row in ordered:
        try:
            pixels = pixel_attributes(row.image_path)
        except Exception as exc:  # a file Pillow cannot read is a bad row, not a failure
            catalog.problems.append(ManifestProblem(row.line, f"cannot read image {row.relative_path!r}: {exc}"))
            continue
        study_uid = uid("study", row.patient_id, row.exam_date)
        series_uid = uid("series", row.patient_id, row.exam_date, row.modality, row.description)
        sop_uid = uid("instance", row.relative_path)
        study = catalog.studies.get(study_uid)
        if study is None:
            study = catalog.studies[study_uid] = {
                "StudyInstanceUID": study_uid,
                "StudyDate": row.exam_date,
                "PatientID": row.patient_id,
                "PatientName": {"Alphabetic": row.patient_name or row.patient_id},
                "StudyID": "1",
                "StudyDescription": row.description,
                "ModalitiesInStudy": [],
                "NumberOfStudyRelatedSeries": 0,
                "NumberOfStudyRelatedInstances": 0,
            }
        elif row.description and row.description not in study["StudyDescription"].split("; "):
            study["StudyDescription"] = "; ".join(filter(None, [study["StudyDescription"], row.description]))
        if row.modality not in study["ModalitiesInStudy"]:
            study["ModalitiesInStudy"].append(row.modality)
        series = catalog.series.get(series_uid)
        if series is None:
            series = catalog.series[series_uid] = {
                "StudyInstanceUID": study_uid,
                "SeriesInstanceUID": series_uid,
                "SeriesNumber": len(catalog.series_of(study_uid)) + 1,
                "Modality": row.modality,
                "SeriesDescription": row.description,
                "BodyPartExamined": row.body_part,
                "SeriesDate": row.exam_date,
                "NumberOfSeriesRelatedInstances": 0,
            }
            study["NumberOfStudyRelatedSeries"] += 1
        series["NumberOfSeriesRelatedInstances"] += 1
        study["NumberOfStudyRelatedInstances"] += 1
        instance = {
            **{k: v for k, v in study.items() if k not in ("ModalitiesInStudy",) and not k.startswith("NumberOf")},
            **{k: v for k, v in series.items() if not k.startswith("NumberOf")},
            "SOPClassUID": SECONDARY_CAPTURE,
            "SOPInstanceUID": sop_uid,
            "InstanceNumber": series["NumberOfSeriesRelatedInstances"],
            "ConversionType": "WSD",
            "ImageType": ["DERIVED", "SECONDARY"],
            **{k: v for k, v in pixels.items() if k != "TransferSyntaxUID"},
            "PixelData": {"BulkDataURI": f"{image_id_prefix}{sop_uid}"},
            "AvailableTransferSyntaxUID": [pixels.get("TransferSyntaxUID", EXPLICIT_LE)],
            "_vrMap": {"PixelData": "OW" if pixels["BitsAllocated"] == 16 else "OB"},
            "imageId": f"{image_id_prefix}{sop_uid}",
        }
        catalog.instances[sop_uid] = instance
        catalog.paths[sop_uid] = row.image_path
    for instance in catalog.instances.values():  # a study's description may have grown after its first image
        instance["StudyDescription"] = catalog.studies[instance["StudyInstanceUID"]]["StudyDescription"]
    return catalog
