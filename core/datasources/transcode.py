"""Compressed frames to native pixels, with pydicom's pixel data decoders.

pydicom picks a decoder plugin per transfer syntax (pylibjpeg, pylibjpeg-openjpeg,
pylibjpeg-rle, Pillow, GDCM...); :func:`decodable` lists those installed here, which is what
the gateway can transcode to Explicit VR Little Endian when a client asks for native frames.
The decoded frame follows pydicom's ``pixel_array``: colour JPEGs in YBR come out as RGB,
interleaved (PlanarConfiguration 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .errors import MalformedResponseError, NotSupportedError
from .transfer import EXPLICIT_LE, MEDIA_FOR_TS, NATIVE, Frame

if TYPE_CHECKING:
    import numpy

__all__ = ["can_decode", "decodable", "decode_frame", "to_native"]

_IMAGE_KEYS = (
    "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "PhotometricInterpretation", "PlanarConfiguration",
)  # fmt: skip


@lru_cache(maxsize=64)
def can_decode(transfer_syntax: str | None) -> bool:
    """True when a pydicom decoder for ``transfer_syntax`` is installed (native syntaxes: always)."""
    if transfer_syntax is None:
        return False
    if transfer_syntax in NATIVE:
        return True
    try:
        from pydicom.pixels import get_decoder
        from pydicom.uid import UID

        return bool(get_decoder(UID(transfer_syntax)).is_available)
    except Exception:
        return False


def decodable() -> list[str]:
    """The compressed transfer syntaxes this installation can decode."""
    return [ts for ts in MEDIA_FOR_TS if ts not in NATIVE and can_decode(ts)]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _dataset(frame: bytes, meta: Mapping[str, Any], transfer_syntax: str) -> Any:
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    ds = Dataset()
    for key in _IMAGE_KEYS:
        value = _first(meta.get(key))
        if value is not None and value != "":
            setattr(ds, key, value)
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation") if k not in ds]
    if missing:
        raise NotSupportedError("decode frame", reason=f"the instance's metadata lacks {', '.join(missing)}")
    ds.SamplesPerPixel = int(ds.get("SamplesPerPixel") or 1)
    ds.BitsStored = int(ds.get("BitsStored") or ds.BitsAllocated)
    ds.HighBit = int(ds.get("HighBit") or ds.BitsStored - 1)
    ds.PixelRepresentation = int(ds.get("PixelRepresentation") or 0)
    if ds.SamplesPerPixel > 1 and "PlanarConfiguration" not in ds:
        ds.PlanarConfiguration = 0
    ds.NumberOfFrames = 1
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    return ds


def decode_frame(frame: bytes, meta: Mapping[str, Any], transfer_syntax: str) -> numpy.ndarray:
    """One compressed frame as pydicom's ``pixel_array`` gives it, from the instance's image attributes."""
    if not can_decode(transfer_syntax):
        raise NotSupportedError("decode frame", reason=f"no decoder for transfer syntax {transfer_syntax} is installed")
    ds = _dataset(frame, meta, transfer_syntax)
    try:
        return ds.pixel_array
    except Exception as exc:
        raise MalformedResponseError(f"a {transfer_syntax} frame could not be decoded: {exc}") from None


def to_native(frame: bytes, meta: Mapping[str, Any], transfer_syntax: str | None) -> Frame:
    """A frame as Explicit VR Little Endian pixels (a native frame is returned as it is)."""
    if transfer_syntax is None:
        raise NotSupportedError("decode frame", reason="the frame's transfer syntax is unknown")
    if transfer_syntax in NATIVE:
        return Frame(frame, EXPLICIT_LE)
    array = decode_frame(frame, meta, transfer_syntax)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return Frame(little.tobytes(), EXPLICIT_LE)
