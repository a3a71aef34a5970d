"""Reading DICOM files for the ``dicomlocal`` source: index headers, metadata, bulk data, frames.

Callers pass paths already checked by :func:`.paths.safe_path`; the index reads only the
attributes it keeps (:data:`INDEX_TAGS`), retrieves read the whole header and leave bulk data
as ``BulkDataURI`` references to the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from datasources.errors import (
    BackendError,
    CorruptFileError,
    DataSourcesError,
    InvalidQueryError,
    MalformedResponseError,
    NotFoundError,
)
from datasources.naturalize import from_pydicom
from datasources.transfer import Frame, dataset_frames

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "INDEX_TAGS",
    "INSTANCE_KEYS",
    "SERIES_KEYS",
    "STUDY_KEYS",
    "FileProblem",
    "HeaderInfo",
    "bulk_value",
    "is_valid_uid",
    "naturalize_file",
    "read_frames",
    "read_index_header",
]

#: Attributes kept in the index per level: what QIDO-RS returns and filters on.
STUDY_KEYS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "StudyDescription",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyID",
)
SERIES_KEYS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "ProtocolName",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
)
INSTANCE_KEYS = (
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
    "ContentDate",
    "ContentTime",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
)
_PIXEL_TAGS = {0x7FE00008: ("FloatPixelData", "OF"), 0x7FE00009: ("DoubleFloatPixelData", "OD"),
               0x7FE00010: ("PixelData", "OW")}  # fmt: skip
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})


def _index_tags() -> tuple[list[int], int]:
    from pydicom.datadict import tag_for_keyword

    tags = [tag_for_keyword(k) for k in ("SpecificCharacterSet", *STUDY_KEYS, *SERIES_KEYS, *INSTANCE_KEYS)]
    clean = sorted({t for t in tags if t is not None})
    return clean, max(clean)


INDEX_TAGS, _LAST_INDEX_TAG = _index_tags()


class FileProblem(Exception):
    """A file that cannot be indexed: why, and whether the verdict may be cached by mtime and size."""

    def __init__(self, reason: str, *, cacheable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cacheable = cacheable


def is_valid_uid(value: Any) -> bool:
    """A DICOM UID: digits and dots, at most 64 characters (also what makes it safe as a file name)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.match(value))


# -- reading headers -----------------------------------------------------------------------


def _looks_like_dataset(head: bytes) -> bool:
    """A Part-10 file without preamble: starts with a group 0002 or 0008 element, little endian."""
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    return group in (0x0002, 0x0008) and element <= 0x0100


def _read(fp: BinaryIO, **kwargs: Any) -> Dataset:
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_partial

    try:
        return read_partial(fp, force=False, **kwargs)
    except InvalidDicomError:
        fp.seek(0)
        head = fp.read(8)
        fp.seek(0)
        if not _looks_like_dataset(head):
            raise FileProblem("not a DICOM file (no DICM marker)") from None
        return read_partial(fp, force=True, **kwargs)


def _dcmread(fp: BinaryIO, **kwargs: Any) -> Dataset:
    """``dcmread`` that also takes files without preamble that start like a dataset (as the index does)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        return dcmread(fp, **kwargs)
    except InvalidDicomError:
        fp.seek(0)
        head = fp.read(8)
        fp.seek(0)
        if not _looks_like_dataset(head):
            raise
        return dcmread(fp, force=True, **kwargs)


class HeaderInfo:
    """What the index keeps of one file."""

    __slots__ = ("attrs", "transfer_syntax")

    def __init__(self, attrs: dict[str, Any], transfer_syntax: str | None) -> None:
        self.attrs = attrs
        self.transfer_syntax = transfer_syntax

    @property
    def study_uid(self) -> str:
        return self.attrs["StudyInstanceUID"]

    @property
    def series_uid(self) -> str:
        return self.attrs["SeriesInstanceUID"]

    @property
    def sop_uid(self) -> str:
        return self.attrs["SOPInstanceUID"]


def _check_uids(values: Mapping[str, Any]) -> None:
    if values.get("StudyInstanceUID") is None and values.get("SOPInstanceUID") is None:
        raise FileProblem("a DICOM file that is not an instance (no Study or SOP Instance UID), e.g. a DICOMDIR")
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = values.get(key)
        if value is None:
            raise FileProblem(f"DICOM file without {key}")
        if not is_valid_uid(value):
            raise FileProblem(f"{key} {value!r} is not a valid UID")


def read_index_header(path: str) -> HeaderInfo:
    """The indexed attributes of one file: a header-only read that stops after the last tag needed.

    Raises :class:`FileProblem` for anything that is not a readable DICOM instance; an
    ``OSError`` (permissions, a file gone) is a problem worth retrying, so not cached.
    """
    stop = _LAST_INDEX_TAG
    try:
        with open(path, "rb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = _read(fp, stop_when=lambda tag, vr, length: tag > stop, specific_tags=INDEX_TAGS)
            except (FileProblem, OSError):
                raise
            except Exception as exc:  # pydicom raises many kinds on garbage
                raise FileProblem(f"cannot parse as DICOM: {type(exc).__name__}: {exc}") from None
            try:
                naturalized = from_pydicom(ds)
            except Exception as exc:
                raise FileProblem(f"cannot decode the header: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise FileProblem(f"cannot read: {exc.strerror or exc}", cacheable=False) from None
    _check_uids(naturalized)
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    wanted = set(STUDY_KEYS) | set(SERIES_KEYS) | set(INSTANCE_KEYS)
    attrs = {k: v for k, v in naturalized.items() if k in wanted and v is not None}
    return HeaderInfo(attrs, ts)


# -- metadata ------------------------------------------------------------------------------


def _binary_paths(ds: Dataset, prefix: str, out: dict[int, str]) -> None:
    for elem in ds:
        tag = f"{int(elem.tag):08X}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or ()):
                _binary_paths(item, f"{prefix}{tag}.{i}.", out)
        elif elem.VR in _BINARY_VRS:
            out[id(elem)] = prefix + tag


def _pixel_element(fp: BinaryIO, ds: Dataset) -> tuple[int, str, str] | None:
    """Which pixel-data element (if any) the header read stopped at: (tag, keyword, VR)."""
    head = fp.read(8)
    if len(head) < 8:
        return None
    implicit, little = getattr(ds, "original_encoding", (False, True))
    endian = "<" if little in (True, None) else ">"
    group, element = struct.unpack(f"{endian}HH", head[:4])
    tag = group << 16 | element
    if tag not in _PIXEL_TAGS:
        return None
    keyword, default_vr = _PIXEL_TAGS[tag]
    vr = default_vr if implicit else head[4:6].decode("ascii", "replace")
    return tag, keyword, vr


def naturalize_file(path: str, image_id: str) -> tuple[dict[str, Any], Dataset]:
    """The whole header of a file, naturalized, pixel data as a ``BulkDataURI`` (never read).

    Binary values over 1 KiB (base64) become ``{"BulkDataURI": "<image id>?tag=<tag path>"}``
    where the tag path is ``7FE00010`` or, inside sequences, ``00540016.0.00181072``.
    Elements after the pixel data (rare: trailing padding, some private groups) are not read.
    """
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with open(path, "rb") as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values are decoded lazily: keep the whole read in here
        ds = _dcmread(fp, stop_before_pixels=True)
        meta = getattr(ds, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None else None
        if ts == DeflatedExplicitVRLittleEndian:
            # the header was inflated into a buffer; the file position tells nothing
            fp.seek(0)
            full = _dcmread(fp)
            pixel = next(((t, kw, full[t].VR) for t, (kw, _) in _PIXEL_TAGS.items() if t in full), None)
        else:
            pixel = _pixel_element(fp, ds)
        paths: dict[int, str] = {}
        _binary_paths(ds, "", paths)

        def uri(elem: Any) -> str:
            return f"{image_id}?tag={paths.get(id(elem), f'{int(elem.tag):08X}')}"

        naturalized = from_pydicom(ds, bulk_data_uri=uri)
    if pixel is not None:
        tag, keyword, vr = pixel
        naturalized[keyword] = {"BulkDataURI": f"{image_id}?tag={tag:08X}"}
        naturalized.setdefault("_vrMap", {})[keyword] = vr
    if ts:
        naturalized["AvailableTransferSyntaxUID"] = [str(ts)]
    return naturalized, ds


def _element_at(ds: Dataset, tag_path: str) -> Any:
    parts = tag_path.split(".")
    if len(parts) % 2 != 1 or not all(re.fullmatch(r"[0-9A-Fa-f]{8}", p) for p in parts[::2]):
        raise InvalidQueryError(f"dicomlocal: {tag_path!r} is not a tag path (TAG or TAG.ITEM.TAG...)")
    node: Any = ds
    for i, part in enumerate(parts):
        if i % 2 == 0:
            tag = int(part, 16)
            if tag not in node:
                raise NotFoundError(f"dicomlocal: the file has no element {tag_path}")
            node = node[tag]
            if i < len(parts) - 1:
                node = node.value
        else:
            index = int(part)
            if index >= len(node):
                raise NotFoundError(f"dicomlocal: the file has no element {tag_path}")
            node = node[index]
    return node


def bulk_value(path: str, tag_path: str, what: str | None = None) -> bytes:
    """The raw bytes of one element of a file (``7FE00010`` gives the pixel data as stored); a
    file gone bad is ``CorruptFileError`` (:func:`stored_file`)."""
    with stored_file(path, what or f"dicomlocal: {Path(path).name}") as ds:
        value = _element_at(ds, tag_path).value
    if isinstance(value, bytes | bytearray | memoryview):
        meta = getattr(ds, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None and tag_path.upper() == "7FE00010" else None
        return Frame(value, str(ts)) if ts is not None else bytes(value)  # pixel data: labelled as stored
    if value is None:
        return b""
    return str(value).encode()


# -- frames --------------------------------------------------------------------------------


def read_frames(path: str, numbers: Sequence[int], name: str | None = None) -> list[bytes]:
    """Frames (numbered from 1) as stored, each a ``Frame`` carrying the file's transfer syntax."""
    return frames_from_file(path, numbers, f"dicomlocal: {name or Path(path).name}")[0]


class _Reads:
    """A file whose reads note whether one was cut short by its end: pydicom itself keeps a value
    shorter than its declared length, or drops an element whose header is cut, without a word.
    A short read of a value (over 8 bytes) is a truncated file; a short one of a header's size
    may be padding after the last element, so it only counts when the pixel data is missing."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.short, self.short_tail = raw, False, False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if size is not None and 0 < len(data) < size:
            if size > 8:
                self.short = True
            else:
                self.short_tail = True
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


@contextlib.contextmanager
def stored_file(path: str | Path, what: str) -> Iterator[Dataset]:
    """The dataset of a stored file while the block runs. A file that no longer reads as DICOM
    (overwritten, truncated, a broken fragment), here or in the block, is :class:`CorruptFileError`
    naming it as ``what`` says (never by its absolute path); a deleted one stays
    ``FileNotFoundError`` for the caller to name; other typed errors pass as they are."""
    try:
        with open(path, "rb") as raw, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fp = _Reads(raw)
            ds = _dcmread(fp)  # type: ignore[arg-type]
            if fp.short:  # pydicom keeps a value cut short by the end of the file, or drops the element
                raise CorruptFileError(f"{what} is truncated: it ends inside a data element", what)
            if fp.short_tail and not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise CorruptFileError(f"{what} is truncated: it ends inside a data element's header", what)
            yield ds
    except DataSourcesError as exc:
        if isinstance(exc, MalformedResponseError) and not isinstance(exc, CorruptFileError):
            raise CorruptFileError(str(exc), what) from None  # pixel data shorter than its frames, a broken fragment
        raise
    except (FileNotFoundError, IsADirectoryError):
        raise  # the caller names what is gone
    except OSError as exc:
        if exc.errno is None:  # pydicom's own OSError (a bad length, a bad seek): what the file holds
            raise CorruptFileError(f"{what} is not a readable DICOM file: {str(exc)[:200]}", what) from None
        raise BackendError(f"{what} cannot be read: {exc.strerror or type(exc).__name__}") from None
    except Exception as exc:  # pydicom's own errors on a file that is not (or no longer) DICOM
        detail = str(exc).replace(os.fspath(path), "<file>")[:200]
        raise CorruptFileError(f"{what} is not a readable DICOM file: {type(exc).__name__}: {detail}", what) from None


def frames_from_file(path: str | Path, numbers: Sequence[int], what: str) -> tuple[list[Frame], str | None]:
    """Frames (from 1) of a stored file and its transfer syntax; errors as :func:`stored_file`
    says (a frame it does not have is ``NotFoundError``)."""
    with stored_file(path, what) as ds:
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
        return list(dataset_frames(ds, numbers, name=what)), ts
