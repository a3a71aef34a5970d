"""Real compressed DICOM for the transfer-syntax tests: pydicom's own test files, re-identified.

pydicom's test files share UIDs between their transfer-syntax variants (``MR_small`` and
``MR_small_RLE`` are one instance), so each copy gets UIDs of its own: one study per family of
transfer syntaxes, one series per file. Pixel data and transfer syntax are kept byte for byte.
Plus the project's own: a 5-frame RLE and a 3-frame JPEG 2000 instance made from the generator's
pixels (multi-frame compressed, split per frame by the Basic Offset Table).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset

from .dicomgen import StudySpec, make_study, make_uid

__all__ = ["SAMPLES", "CompressedSet", "STUDIES", "write_compressed"]

#: study seed -> (patient name, patient id, study date, pydicom test files). Every file is one
#: Orthanc accepts and pydicom decodes (JPEG-LS near-lossless ones and ``JPEG-lossy`` are neither).
STUDIES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "jpeg": ("JPEG^BASELINE", "TSJPEG", "20200101", (
        "SC_rgb_jpeg_dcmtk.dcm", "SC_jpeg_no_color_transform.dcm", "examples_ybr_color.dcm",
        "JPGExtended.dcm", "SC_rgb_jpeg_gdcm.dcm",
    )),
    "j2k": ("JPEG^TWOTHOUSAND", "TSJ2K", "20200202", (
        "MR_small_jp2klossless.dcm", "examples_jpeg2k.dcm", "693_J2KI.dcm", "JPEG2000.dcm", "SC_rgb_gdcm_KY.dcm",
    )),
    "rle": ("RUN^LENGTH", "TSRLE", "20200303", (
        "MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit_2frame.dcm",
    )),
    "other": ("JPEG^LS", "TSOTHER", "20200404", ("MR_small_jpeg_ls_lossless.dcm", "image_dfl.dcm")),
}  # fmt: skip
SAMPLES = tuple(name for _, _, _, names in STUDIES.values() for name in names)


@dataclass
class CompressedSet:
    """The files written, their datasets, and the study UIDs."""

    files: list[Path]
    study_uids: list[str]


def _reidentify(ds: FileDataset, seed: str, index: int, name: str, patient: tuple[str, str, str]) -> FileDataset:
    ds.StudyInstanceUID = make_uid("compressed", seed)
    ds.SeriesInstanceUID = make_uid("compressed", seed, index)
    ds.SOPInstanceUID = make_uid("compressed", seed, index, name)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName, ds.PatientID, ds.StudyDate = patient
    ds.StudyTime = "120000"
    ds.StudyDescription = f"TRANSFER SYNTAX {seed.upper()}"
    ds.SeriesNumber = index + 1
    ds.SeriesDescription = name.removesuffix(".dcm")
    ds.AccessionNumber = f"TS{seed.upper()}"[:16]
    if "Modality" not in ds:
        ds.Modality = "OT"
    return ds


def _own(seed: str, patient: tuple[str, str, str], first_index: int) -> list[FileDataset]:
    """Multi-frame compressed instances made here: RLE (pydicom's encoder) and JPEG 2000 (openjpeg)."""
    from pydicom.uid import JPEG2000Lossless, RLELossless

    (base,) = make_study(
        StudySpec(
            f"compressed-{seed}", patient_name=patient[0], modality="MR", n_instances=1, frames=5, rows=64, cols=64
        )
    )
    rle = copy.deepcopy(base)
    rle.compress(RLELossless, encoding_plugin="pydicom")
    j2k = copy.deepcopy(base)
    j2k.NumberOfFrames = 3
    j2k.PixelData = base.PixelData[: 3 * base.Rows * base.Columns * 2]
    j2k.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    out = []
    for offset, ds in enumerate((rle, j2k)):
        out.append(_reidentify(ds, seed, first_index + offset, f"generated_{offset}", patient))
    return out


def write_compressed(folder: Path) -> CompressedSet:
    """Write every sample (and the generated multi-frame ones) to ``folder``; deterministic UIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    uids = []
    for seed, (name, pid, date, names) in STUDIES.items():
        patient = (name, pid, date)
        datasets = []
        for index, sample in enumerate(names):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(get_testdata_file(sample))
            datasets.append(_reidentify(ds, seed, index, sample, patient))
        if seed == "rle":
            datasets += _own(seed, patient, len(names))
        for ds in datasets:
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds.save_as(path, enforce_file_format=True)
            files.append(path)
        uids.append(make_uid("compressed", seed))
    return CompressedSet(files, uids)
