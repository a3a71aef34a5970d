"""The writing side of a dicomlocal folder: ``store.dicom`` into it, ``reject.series`` out of view.

Stored instances become ``<Study UID>/<Series UID>/<SOP UID>.dcm``, each written under a
temporary name, renamed into place and indexed (a file that cannot be indexed is removed);
an instance already indexed is refused, never overwritten. A rejected series is hidden by
the index only: its files stay on disk until ``helpers.restore_series()`` shows it again.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from datasources.buffers import reader
from datasources.errors import (
    DataSourcesError,
    InvalidQueryError,
    NotFoundError,
    NotSupportedError,
    UnsafePathError,
)
from datasources.results import InstanceOutcome, StoreResult

from ..part10 import to_part10
from .config import LocalConfig
from .files import FileProblem, is_valid_uid
from .index import LocalIndex
from .paths import ensure_folder, file_uri, write_atomic

__all__ = ["Writing", "require_uid"]


class Writing:
    """``store_dicom``, ``reject_series`` and their helpers (a mixin of :class:`~.source.DicomLocalSource`)."""

    # state and members: DicomLocalSource's
    config: LocalConfig
    index: LocalIndex
    host: Any
    _store_lock: threading.Lock
    _root: Callable[[], str]  # the root folder, opened and resolved

    def store_dicom(self, items: Any, **_: Any) -> StoreResult:
        """Write instances into the folder as ``<Study UID>/<Series UID>/<SOP UID>.dcm`` and index them.

        Takes pydicom Datasets, Part-10 bytes, file paths or naturalized dicts (one or a
        list). Each file is written under a temporary name and renamed into place; an
        instance already in the index is refused, never overwritten.
        """
        if self.config.read_only:
            raise NotSupportedError("store.dicom", reason="the source is configured readOnly")
        batch = list(items) if isinstance(items, list | tuple) else [items]
        root = self._root()
        with self._store_lock:
            return StoreResult(self._store_one(root, i, item) for i, item in enumerate(batch))

    def _store_one(self, root: str, index: int, item: Any) -> InstanceOutcome:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid values are refused below, with the reason
                origin, data = _as_part10(index, item)
        except _Refused as exc:
            return InstanceOutcome("failed", None, None, exc.reason, origin=exc.origin)
        try:
            uids = _uids_of(data)
        except _Refused as exc:
            return InstanceOutcome("failed", None, None, exc.reason, origin=origin)
        study, series, sop, sop_class = uids
        existing = self.index.path_of(sop)
        if existing is not None:
            return InstanceOutcome(
                "failed", sop, sop_class, f"duplicate SOP instance: already stored as {existing[2]}", origin=origin
            )
        rel = f"{study}/{series}/{sop}.dcm"
        try:
            folder = ensure_folder(root, [study, series])
            path = write_atomic(folder, f"{sop}.dcm", data)
        except FileExistsError:
            return InstanceOutcome("failed", sop, sop_class, f"a file {rel} already exists", origin=origin)
        except UnsafePathError as exc:
            return InstanceOutcome("failed", sop, sop_class, str(exc), origin=origin)
        except OSError as exc:
            reason = f"cannot write {rel}: {exc.strerror or exc}"
            return InstanceOutcome("failed", sop, sop_class, reason, origin=origin)
        try:
            self.index.add_file(rel, path)
        except (FileProblem, OSError, DataSourcesError) as exc:
            os.unlink(path)  # nothing half-done: a file that is not indexed does not stay
            return InstanceOutcome("failed", sop, sop_class, f"cannot index the stored file: {exc}", origin=origin)
        image_id = file_uri(os.path.realpath(path))
        if self.index.is_rejected(study, series):
            return InstanceOutcome(
                "warning", sop, sop_class,
                "stored, but its series was rejected: it stays hidden until helpers.restore_series()",
                image_id, origin,
            )  # fmt: skip
        return InstanceOutcome("stored", sop, sop_class, None, image_id, origin)

    def reject_series(self, study_uid: str, series_uid: str, *_: Any, **__: Any) -> None:
        """Hide a series from this source (the index only: its files stay on disk)."""
        require_uid(study_uid, "StudyInstanceUID")
        require_uid(series_uid, "SeriesInstanceUID")
        if not self.index.reject_series(study_uid, series_uid):
            raise NotFoundError(f"dicomlocal: no series {series_uid!r} in study {study_uid!r}")
        if self.host is not None:
            self.host.metadata_store.remove_study(study_uid)  # the next retrieve reloads it without the series

    def restore_series(self, study_uid: str, series_uid: str) -> bool:
        restored = self.index.restore_series(study_uid, series_uid)
        if restored and self.host is not None:
            self.host.metadata_store.remove_study(study_uid)
        return restored

    def rejected_series(self) -> list[tuple[str, str]]:
        """The series hidden by ``reject.series`` (until ``restore_series``)."""
        return self.index.rejected()


class _Refused(Exception):
    def __init__(self, reason: str, origin: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.origin = origin


def require_uid(value: Any, key: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidQueryError(f"dicomlocal: {key} is required (a UID string), got {value!r}")


def _as_part10(index: int, item: Any) -> tuple[str, bytes | bytearray | memoryview]:
    """One input of ``store.dicom`` as Part-10 bytes, and where it came from (for the report).
    Bytes-like inputs that already are Part 10 come back as they are (a memoryview is not copied)."""
    from pydicom import Dataset, dcmread

    if isinstance(item, str | os.PathLike):
        origin = os.fspath(item)
        try:
            with open(origin, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise _Refused(f"cannot read the file: {exc.strerror or exc}", origin) from None
    elif isinstance(item, bytes | bytearray | memoryview):
        origin, data = f"input {index}", item  # not copied: a memoryview of the gateway's spool stays there
    elif isinstance(item, Dataset):
        origin = f"dataset {index}"
        try:
            data = to_part10(item)
        except Exception as exc:
            raise _Refused(f"cannot encode the dataset: {type(exc).__name__}: {exc}", origin) from None
    elif isinstance(item, Mapping):
        from datasources.naturalize import to_pydicom

        origin = f"dataset {index}"
        try:
            data = to_part10(to_pydicom(item))
        except Exception as exc:
            raise _Refused(f"cannot encode the naturalized dataset: {type(exc).__name__}: {exc}", origin) from None
    else:
        raise _Refused(f"not a Dataset, naturalized dict, bytes or path: {type(item).__name__}", f"input {index}")
    if data[128:132] != b"DICM":
        try:
            with warnings.catch_warnings(), reader(data) as fp:
                warnings.simplefilter("ignore")
                data = to_part10(dcmread(fp, force=True))
        except Exception as exc:
            raise _Refused(f"not DICOM: {type(exc).__name__}: {exc}", origin) from None
    return origin, data


def _uids_of(data: bytes | bytearray | memoryview) -> tuple[str, str, str, str | None]:
    from pydicom import dcmread

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values are read lazily: invalid ones warn on first access
        try:
            with reader(data) as fp:  # the header only: the pixels are not copied
                ds = dcmread(fp, stop_before_pixels=True)
            values = {k: ds.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")}
        except Exception as exc:
            raise _Refused(f"not DICOM: {type(exc).__name__}: {exc}") from None
    uids = []
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = values[key]
        if not is_valid_uid(str(value) if value is not None else None):
            raise _Refused(f"{key} is missing or not a valid UID: {value!r}")
        uids.append(str(value))
    sop_class = values["SOPClassUID"]
    return uids[0], uids[1], uids[2], str(sop_class) if sop_class else None
