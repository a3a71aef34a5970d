"""Transfer syntaxes of pixel data: which are native, their media types, and bytes that carry their label.

A frame handed out by a source is a :class:`Frame`: ``bytes`` (so every caller that treats it
as bytes keeps working) with the ``transfer_syntax`` it is encoded in, learnt where the
source learnt it — a WADO-RS part's ``transfer-syntax=`` parameter, a Part-10 file's meta, the
source's own knowledge (a JPEG file is JPEG baseline). ``None`` means nobody said, and a
consumer must ask (the instance's metadata) rather than guess.

Native frames are always handed out as Explicit VR Little Endian bytes (PS3.18 8.7.3.5.2):
big-endian pixel data is byte-swapped, deflated data is already inflated by pydicom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import MalformedResponseError, NotFoundError, NotSupportedError

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "BIG_ENDIAN",
    "DEFAULT_TS_FOR_MEDIA",
    "DEFLATED",
    "EXPLICIT_LE",
    "IMPLICIT_LE",
    "MEDIA_FOR_TS",
    "NATIVE",
    "Frame",
    "dataset_frames",
    "is_native",
    "label_of",
    "labelled",
    "media_type_of",
    "metadata_transfer_syntax",
    "swap_bytes",
]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
#: Transfer syntaxes whose pixel data is not compressed (frames are served as Explicit VR LE).
NATIVE = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED, BIG_ENDIAN})

#: Transfer syntax -> the media type WADO-RS names its frames with (PS3.18 Table 8.7.3-5).
MEDIA_FOR_TS: Mapping[str, str] = {
    EXPLICIT_LE: "application/octet-stream",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
}
#: The transfer syntax a media type means when no ``transfer-syntax`` parameter says (PS3.18 Table 8.7.3-5).
DEFAULT_TS_FOR_MEDIA: Mapping[str, str] = {
    "application/octet-stream": EXPLICIT_LE,
    "image/dicom-rle": "1.2.840.10008.1.2.5",
    "image/jpeg": "1.2.840.10008.1.2.4.70",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/jphc": "1.2.840.10008.1.2.4.201",
}


class Frame(bytes):
    """Bytes of one frame (or a bulk data value) with the transfer syntax they are encoded in."""

    transfer_syntax: str | None

    def __new__(cls, data: bytes | bytearray | memoryview, transfer_syntax: str | None = None) -> Frame:
        frame = super().__new__(cls, data)
        frame.transfer_syntax = transfer_syntax
        return frame

    def __reduce__(self) -> tuple[Any, ...]:
        return (Frame, (bytes(self), self.transfer_syntax))

    def __repr__(self) -> str:
        return f"Frame({len(self)} bytes, transfer_syntax={self.transfer_syntax!r})"


def labelled(data: bytes | bytearray | memoryview, transfer_syntax: str | None) -> Frame:
    """``data`` as a :class:`Frame` of ``transfer_syntax`` (native syntaxes are labelled Explicit VR LE)."""
    ts = EXPLICIT_LE if transfer_syntax in NATIVE else transfer_syntax
    if isinstance(data, Frame) and data.transfer_syntax == ts:
        return data
    return Frame(data, ts)


def label_of(data: Any) -> str | None:
    """The transfer syntax a frame carries, or None when its source did not say."""
    return getattr(data, "transfer_syntax", None)


def is_native(transfer_syntax: str | None) -> bool:
    return transfer_syntax in NATIVE


def media_type_of(transfer_syntax: str | None) -> str:
    """The media type of frames in ``transfer_syntax`` (octet-stream for native and unknown ones)."""
    if transfer_syntax is None or transfer_syntax in NATIVE:
        return "application/octet-stream"
    return MEDIA_FOR_TS.get(transfer_syntax, "application/octet-stream")


def metadata_transfer_syntax(meta: Mapping[str, Any]) -> str | None:
    """The transfer syntax an instance's naturalized metadata names, if any."""
    for key in ("TransferSyntaxUID", "AvailableTransferSyntaxUID"):
        value = meta.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            return value
    return None


# -- frames of a pydicom dataset ------------------------------------------------------------


def _count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def dataset_frames(ds: Dataset, numbers: Sequence[int] | None = None, *, name: str = "the instance") -> list[Frame]:
    """Frames ``numbers`` (from 1; all when None) of a dataset read from a Part-10 file, labelled.

    Encapsulated pixel data is split with pydicom's ``generate_frames`` (Basic or Extended
    Offset Table, else one frame per fragment run); native pixel data is cut by frame size,
    byte-swapped to little endian when the file is big endian.
    """
    from pydicom.encaps import generate_frames

    keyword = next((kw for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if kw in ds), None)
    if keyword is None:
        raise NotFoundError(f"{name} has no pixel data")
    count = _count(ds)
    wanted = list(range(1, count + 1)) if numbers is None else list(numbers)
    bad = [n for n in wanted if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > count]
    if bad:
        raise NotFoundError(f"frames {bad} do not exist; {name} has {count} frame(s), counted from 1")
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    data = ds[keyword].value
    if ts is not None and ts not in NATIVE:
        offsets = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        try:
            frames = list(generate_frames(data, number_of_frames=count, extended_offsets=offsets))
        except Exception as exc:
            raise MalformedResponseError(
                f"{name}: encapsulated pixel data cannot be split into frames: {exc}"
            ) from None
        return [Frame(frames[n - 1], ts) for n in wanted]
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.get("BitsAllocated") or {"PixelData": 16, "FloatPixelData": 32}.get(keyword, 64))
    pixels = int(ds.Rows) * int(ds.Columns) * samples
    if (pixels * bits) % 8:
        if count > 1:
            raise NotSupportedError("retrieve.frames", reason="frames of bit-packed data that are not byte-aligned")
        return [Frame(bytes(data), EXPLICIT_LE)]
    size = pixels * bits // 8
    if len(data) < size * max(wanted):
        raise MalformedResponseError(
            f"{name}: pixel data holds {len(data)} bytes, frame {max(wanted)} ends at {size * max(wanted)}"
        )
    swap = ts == BIG_ENDIAN and bits > 8
    out = []
    for n in wanted:
        chunk = bytes(data[(n - 1) * size : n * size])
        out.append(Frame(swap_bytes(chunk, bits // 8) if swap else chunk, EXPLICIT_LE))
    return out


def swap_bytes(data: bytes, width: int) -> bytes:
    """Big-endian words of ``width`` bytes to little endian (and back)."""
    import array

    if width not in (2, 4, 8):
        return data
    arr = array.array({2: "H", 4: "I", 8: "Q"}[width])
    arr.frombytes(data)
    arr.byteswap()
    return arr.tobytes()
