"""The CSV manifest: one row per image, checked row by row.

Columns (header names are matched without regard to case, spaces or dashes)::

    patient_id, patient_name, exam_date, modality, description, body_part, image_path

``patient_id``, ``exam_date``, ``modality`` and ``image_path`` are required; ``exam_date`` is
``YYYY-MM-DD`` or ``YYYYMMDD``; ``modality`` a DICOM modality code; ``image_path`` relative to
the manifest's folder, and it must stay inside it. A bad row is reported with its line number
and skipped: it is never fatal, and never silently dropped.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from datasources.errors import ConfigurationError, NotFoundError

__all__ = ["MODALITIES", "ManifestProblem", "ManifestRow", "read_manifest"]

REQUIRED = ("patient_id", "exam_date", "modality", "image_path")
OPTIONAL = ("patient_name", "description", "body_part")
# DICOM modality codes (PS3.3 C.7.3.1.1.1) a picture data set is likely to hold
MODALITIES = frozenset(
    "CR CT DX ES GM IO MG MR NM OP OT PT PX RF RG SC SM US XA XC DG ECG IVUS OCT OPT".split()  # noqa: SIM905
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ManifestProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ManifestRow:
    line: int
    patient_id: str
    patient_name: str
    exam_date: str  # YYYYMMDD
    modality: str
    description: str
    body_part: str
    image_path: Path  # resolved, inside the root
    relative_path: str


def _column(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _date(text: str) -> str | None:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    return None


def read_manifest(path: Path) -> tuple[list[ManifestRow], list[ManifestProblem]]:
    """The good rows and the problems, in file order."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotFoundError(f"imagefolder: no manifest at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"imagefolder: cannot read the manifest {path}: {exc}") from None
    reader = csv.reader(text.splitlines())
    try:
        header = [_column(c) for c in next(reader)]
    except StopIteration:
        raise ConfigurationError(f"imagefolder: the manifest {path} is empty") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ConfigurationError(f"imagefolder: the manifest {path} lacks the column(s) {', '.join(missing)}")
    root = path.parent.resolve()
    rows: list[ManifestRow] = []
    problems: list[ManifestProblem] = []
    seen: dict[Path, int] = {}
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            problems.append(ManifestProblem(line, f"{len(values)} values for {len(header)} columns"))
            continue
        record = {name: (values[i].strip() if i < len(values) else "") for i, name in enumerate(header)}
        empty = [c for c in REQUIRED if not record.get(c)]
        if empty:
            problems.append(ManifestProblem(line, f"no {', '.join(empty)}"))
            continue
        date = _date(record["exam_date"])
        if date is None:
            problems.append(ManifestProblem(line, f"bad exam_date {record['exam_date']!r} (use YYYY-MM-DD)"))
            continue
        modality = record["modality"].upper()
        if modality not in MODALITIES:
            problems.append(ManifestProblem(line, f"unknown modality {record['modality']!r}"))
            continue
        relative = record["image_path"]
        image = (root / relative).resolve()
        if not image.is_relative_to(root):
            problems.append(ManifestProblem(line, f"image_path {relative!r} points outside the folder"))
            continue
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(ManifestProblem(line, f"image_path {relative!r} is not a PNG or JPEG file"))
            continue
        if not image.is_file():
            problems.append(ManifestProblem(line, f"missing file {relative!r}"))
            continue
        if image in seen:
            problems.append(ManifestProblem(line, f"{relative!r} is already listed on line {seen[image]}"))
            continue
        seen[image] = line
        rows.append(
            ManifestRow(
                line=line,
                patient_id=record["patient_id"],
                patient_name=record.get("patient_name", ""),
                exam_date=date,
                modality=modality,
                description=record.get("description", ""),
                body_part=record.get("body_part", "").upper(),
                image_path=image,
                relative_path=relative,
            )
        )
    return rows, problems
