"""Deterministic synthetic DICOM studies for tests and benchmarks (pydicom, no numpy needed).

Same arguments, same bytes and UIDs: UIDs are ``2.25.<uuid5>`` of the seed and the indices.
Files are Part 10 with preamble and ``DICM`` (Explicit VR Little Endian): a bare Dataset sent
through STOW is stored by Orthanc as it is and cannot be read back as a file.
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

__all__ = ["StudySpec", "dataset_to_bytes", "make_study", "make_uid", "write_datasets"]

NAMESPACE = uuid.UUID("0d8f5a52-93a3-4c1b-8f0e-53a0f7c1e2b4")
SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
MULTIFRAME_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC
SERIES_NAMES = {
    "CT": ["AXIAL 1.25MM LUNG", "AXIAL 5MM SOFT TISSUE", "CORONAL MPR"],
    "MR": ["AX FLAIR", "AX T2", "SAG T1 POST"],
}


def make_uid(seed: object, *parts: object) -> str:
    return f"2.25.{uuid.uuid5(NAMESPACE, '/'.join(map(str, (seed, *parts)))).int}"


class StudySpec:
    """What one generated study looks like."""

    def __init__(
        self,
        seed: object,
        *,
        patient_name: str = "LEE^ANNA^K",
        patient_id: str = "PAT0001",
        modality: str = "CT",
        study_date: str = "20200115",
        study_time: str = "091500",
        description: str = "CT CHEST W/O CONTRAST",
        accession: str = "ACC0001",
        n_series: int = 1,
        n_instances: int = 3,
        rows: int = 16,
        cols: int = 16,
        frames: int = 1,
        private: bool = True,
    ) -> None:
        self.seed = seed
        self.patient_name = patient_name
        self.patient_id = patient_id
        self.modality = modality
        self.study_date = study_date
        self.study_time = study_time
        self.description = description
        self.accession = accession
        self.n_series = n_series
        self.n_instances = n_instances
        self.rows = rows
        self.cols = cols
        self.frames = frames
        self.private = private

    @property
    def study_uid(self) -> str:
        return make_uid(self.seed, "study")


def _pixels(rows: int, cols: int, frames: int, salt: int) -> bytes:
    """A gradient with a moving square: 16-bit little endian, deterministic."""
    out = bytearray()
    for f in range(frames):
        for r in range(rows):
            out += struct.pack(
                f"<{cols}H",
                *(
                    ((r * 37 + c * 11 + salt * 7 + f * 13) % 1024) + (800 if abs(r - f - salt % rows) < 3 else 0)
                    for c in range(cols)
                ),
            )
    return bytes(out)


def _dataset(spec: StudySpec, series: int, instance: int) -> FileDataset:
    study_uid = spec.study_uid
    series_uid = make_uid(spec.seed, "series", series)
    sop_uid = make_uid(spec.seed, "instance", series, instance)
    multiframe = spec.frames > 1
    sop_class = MULTIFRAME_SOP_CLASS if multiframe else SOP_CLASSES.get(spec.modality, SOP_CLASSES["CT"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "2.25.153348462152216245839473727375416542210"
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)

    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = spec.study_date
    ds.StudyTime = spec.study_time
    ds.SeriesDate = spec.study_date
    ds.SeriesTime = spec.study_time
    ds.AccessionNumber = spec.accession
    ds.StudyID = "1"
    ds.StudyDescription = spec.description
    names = SERIES_NAMES.get(spec.modality, ["SERIES"])
    ds.SeriesDescription = names[series % len(names)]
    ds.SeriesNumber = series + 1
    ds.InstanceNumber = instance + 1
    ds.Modality = spec.modality
    ds.Manufacturer = "DATASOURCES TESTS"
    ds.InstitutionName = "GENERAL HOSPITAL"
    ds.ReferringPhysicianName = "SMITH^JOHN"
    ds.BodyPartExamined = "CHEST" if spec.modality == "CT" else "HEAD"
    ds.ImagePositionPatient = [-100.0, -100.0, float(instance) * 2.5]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.75, 0.75]
    ds.SliceThickness = 2.5
    ds.SliceLocation = float(instance) * 2.5
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 400
    ds.WindowWidth = 1500
    ds.RescaleIntercept = -1024 if spec.modality == "CT" else 0
    ds.RescaleSlope = 1
    if multiframe:
        ds.NumberOfFrames = spec.frames
    code = Dataset()
    code.CodeValue = "RPID16" if spec.modality == "CT" else "RPID22"
    code.CodingSchemeDesignator = "RADLEX"
    code.CodeMeaning = spec.description
    ds.ProcedureCodeSequence = Sequence([code])
    if spec.private:
        block = ds.private_block(0x0029, "DATASOURCES TESTS 1.0", create=True)
        block.add_new(0x10, "LO", f"private {series}/{instance}")
        block.add_new(0x11, "OB", bytes(range(256)) * 2)  # large enough to become a BulkDataURI
    ds.PixelData = _pixels(spec.rows, spec.cols, spec.frames, series * 31 + instance)
    ds["PixelData"].VR = "OW"
    return ds


def make_study(spec: StudySpec) -> list[FileDataset]:
    """Every instance of the study, series by series."""
    return [_dataset(spec, s, i) for s in range(spec.n_series) for i in range(spec.n_instances)]


def iter_studies(specs: list[StudySpec]) -> Iterator[FileDataset]:
    for spec in specs:
        yield from make_study(spec)


def dataset_to_bytes(ds: FileDataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_datasets(datasets: list[FileDataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(dataset_to_bytes(ds))
        paths.append(path)
    return paths
