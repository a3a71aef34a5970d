"""What a conformance run is pointed at: a host, the source's name, and studies known to be in it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..transfer import Frame, dataset_frames

__all__ = ["ExpectedFrames", "KnownStudy", "Target", "frames_from_files", "known_from_files"]


@dataclass(frozen=True)
class ExpectedFrames:
    """The frames one instance must give, byte for byte and with this transfer syntax each.

    ``dataset`` (a pydicom Dataset, when the frames come from a Part-10 file) lets the kit
    also compare decoded frames with pydicom's ``pixel_array``.
    """

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    frames: tuple[Frame, ...]
    dataset: Any = None


@dataclass(frozen=True)
class KnownStudy:
    """A study the source holds, with what is known about it (None: not checked).

    ``patient_name`` is the Alphabetic group (``"DOE^JANE"``), ``study_date`` ``YYYYMMDD``.
    """

    study_instance_uid: str
    patient_name: str | None = None
    patient_id: str | None = None
    study_date: str | None = None
    modalities: tuple[str, ...] = ()
    series_count: int | None = None
    instance_count: int | None = None
    frames: tuple[ExpectedFrames, ...] = ()


@dataclass
class Target:
    """A configured source under test: ``host.get_data_source(name)`` (the active one when None)."""

    host: Any
    name: str | None
    studies: Sequence[KnownStudy]
    #: operations the source is expected to refuse with NotSupportedError ("store.dicom", "reject.series")
    unsupported: frozenset[str] = field(default_factory=frozenset)

    @property
    def data_source(self) -> Any:
        return self.host.active_data_source if self.name is None else self.host.get_data_source(self.name)

    @property
    def store(self) -> Any:
        return self.host.metadata_store

    def study(self, uid: str) -> KnownStudy:
        return next(s for s in self.studies if s.study_instance_uid == uid)


def frames_from_files(paths: Iterable[str | Path]) -> dict[str, tuple[ExpectedFrames, ...]]:
    """Expected frames of Part-10 files, grouped by study UID (for ``KnownStudy.frames``)."""
    import warnings

    import pydicom

    out: dict[str, list[ExpectedFrames]] = {}
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path))
        if "PixelData" not in ds:
            continue
        expected = ExpectedFrames(
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.SOPInstanceUID),
            tuple(dataset_frames(ds, name=Path(path).name)),
            ds,
        )
        out.setdefault(expected.study_instance_uid, []).append(expected)
    return {k: tuple(v) for k, v in out.items()}


def known_from_files(paths: Iterable[str | Path], **by_study: Mapping[str, Any]) -> list[KnownStudy]:
    """KnownStudy records read from Part-10 files (patient, date, modalities, counts, frames)."""
    import warnings

    import pydicom

    paths = list(paths)
    groups: dict[str, list[Any]] = {}
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        groups.setdefault(str(ds.StudyInstanceUID), []).append(ds)
    frames = frames_from_files(paths)
    studies = []
    for uid, datasets in groups.items():
        first = datasets[0]
        modalities: list[str] = []
        for ds in datasets:
            if ds.get("Modality") and ds.Modality not in modalities:
                modalities.append(str(ds.Modality))
        studies.append(
            KnownStudy(
                uid,
                patient_name=str(first.get("PatientName") or "") or None,
                patient_id=str(first.get("PatientID") or "") or None,
                study_date=str(first.get("StudyDate") or "") or None,
                modalities=tuple(modalities),
                series_count=len({str(ds.SeriesInstanceUID) for ds in datasets}),
                instance_count=len(datasets),
                frames=frames.get(uid, ()),
                **dict(by_study.get(uid, {})),
            )
        )
    return studies
