"""File work for the ``dicomlocal`` source: safe paths, header reads, frames, atomic writes.

Every path that reaches the disk goes through :func:`safe_path`, which refuses ``..``,
absolute paths outside the root, and symbolic links (all links when ``followSymlinks`` is
off; links that end up outside the root always) with :class:`UnsafePathError`.
"""

from __future__ import annotations

import os
import re
import secrets
import struct
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote, unquote

from datasources.errors import InvalidQueryError, NotFoundError, UnsafePathError
from datasources.naturalize import from_pydicom
from datasources.transfer import Frame, dataset_frames

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "INDEX_TAGS",
    "INSTANCE_KEYS",
    "SERIES_KEYS",
    "STUDY_KEYS",
    "TEMP_PREFIX",
    "FileProblem",
    "HeaderInfo",
    "bulk_value",
    "file_uri",
    "is_valid_uid",
    "naturalize_file",
    "read_frames",
    "read_index_header",
    "safe_path",
    "split_uri",
    "write_atomic",
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

#: Temporary files of :func:`write_atomic`; the scanner ignores them.
TEMP_PREFIX = ".datasources-tmp-"

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


# -- paths ---------------------------------------------------------------------------------


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def safe_path(root: str, candidate: str | os.PathLike[str], *, follow_symlinks: bool = False) -> str:
    """The real path of ``candidate`` (relative to ``root``, or absolute), refused if it leaves the root.

    ``root`` is the real path of the root folder. ``..`` components are refused outright,
    whatever they point at; so is any symbolic link on the way unless ``follow_symlinks``,
    and a link whose target is outside the root in any case.
    """
    text = os.fspath(candidate)
    if "\0" in text:
        raise UnsafePathError("dicomlocal: a path with a NUL byte is refused")
    if ".." in PurePosixPath(text.replace(os.sep, "/")).parts:
        raise UnsafePathError(f"dicomlocal: {text!r} has a '..' component; paths must stay inside the root")
    joined = os.path.normpath(text if os.path.isabs(text) else os.path.join(root, text))
    if not _inside(joined, root):
        raise UnsafePathError(f"dicomlocal: {text!r} is outside the root folder {root!r}")
    real = os.path.realpath(joined)
    if not _inside(real, root):
        raise UnsafePathError(f"dicomlocal: {text!r} is a symbolic link (or under one) pointing outside the root")
    if real != joined and not follow_symlinks:
        raise UnsafePathError(f"dicomlocal: {text!r} goes through a symbolic link and followSymlinks is false")
    return real


def file_uri(real_path: str) -> str:
    """The image id of a file: ``dicomfile:`` + its absolute path, percent-encoded."""
    return "dicomfile:" + quote(Path(real_path).as_posix(), safe="/")


def split_uri(uri: str) -> tuple[str, dict[str, str]]:
    """``dicomfile:/a/b.dcm?frame=2&tag=7FE00010`` -> (``/a/b.dcm``, {frame, tag}); also ``file://`` URLs."""
    if not isinstance(uri, str) or not uri:
        raise InvalidQueryError(f"dicomlocal: not a URI: {uri!r}")
    body = uri
    for prefix in ("dicomfile:", "wadouri:", "dicomweb:"):
        if body.startswith(prefix):
            body = body[len(prefix) :]
            break
    if body.startswith("file://"):
        body = body[len("file://") :]
        if not body.startswith("/"):
            raise UnsafePathError(f"dicomlocal: only local file URLs are read, not {uri!r}")
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", body):
        raise UnsafePathError(f"dicomlocal: {uri!r} is not a local file")
    path, _, query = body.partition("?")
    params: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        params[unquote(key)] = unquote(value)
    return unquote(path), params


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


def bulk_value(path: str, tag_path: str) -> bytes:
    """The raw bytes of one element of a file (``7FE00010`` gives the pixel data as stored)."""
    with open(path, "rb") as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _dcmread(fp)
        value = _element_at(ds, tag_path).value
    if isinstance(value, bytes | bytearray | memoryview):
        meta = getattr(ds, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None and tag_path.upper() == "7FE00010" else None
        return Frame(value, str(ts)) if ts is not None else bytes(value)  # pixel data: labelled as stored
    if value is None:
        return b""
    return str(value).encode()


# -- frames --------------------------------------------------------------------------------


def read_frames(path: str, numbers: Sequence[int]) -> list[bytes]:
    """Frames (numbered from 1) as stored, each a ``Frame`` carrying the file's transfer syntax."""
    with open(path, "rb") as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _dcmread(fp)
        return _frames_of(ds, numbers, Path(path).name)


def _frames_of(ds: Dataset, numbers: Sequence[int], name: str) -> list[bytes]:
    """Labelled with the file's transfer syntax (native ones as Explicit VR Little Endian, swapped)."""
    return list(dataset_frames(ds, numbers, name=f"dicomlocal: {name}"))


# -- writing -------------------------------------------------------------------------------


def ensure_folder(root: str, parts: Iterable[str]) -> str:
    """Create ``root/part/...`` one level at a time, refusing any existing link on the way."""
    current = root
    for part in parts:
        if part in ("", ".", "..") or "/" in part or os.sep in part:
            raise UnsafePathError(f"dicomlocal: {part!r} cannot be a folder name")
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise UnsafePathError(f"dicomlocal: {current!r} is a symbolic link; store writes only real folders")
        try:
            os.mkdir(current)
        except FileExistsError:
            if not os.path.isdir(current):
                raise UnsafePathError(f"dicomlocal: {current!r} exists and is not a folder") from None
    return current


def write_atomic(folder: str, name: str, data: bytes, on_written: Callable[[str], None] | None = None) -> str:
    """Write ``folder/name`` whole or not at all: a temporary name, fsync, then a rename.

    An existing file is never replaced (``FileExistsError``): the final name is taken with
    ``os.link`` where the file system allows it, else checked just before ``os.replace``.
    """
    final = os.path.join(folder, name)
    temp = os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(8)}-{name}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if on_written is not None:
            on_written(temp)
        try:
            os.link(temp, final)
        except FileExistsError:
            raise
        except OSError:
            if os.path.lexists(final):
                raise FileExistsError(final) from None
            os.replace(temp, final)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    return final
