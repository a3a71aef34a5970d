"""Rendered frames (WADO-RS ``/rendered`` and ``/thumbnail``): one frame as a PNG or JPEG.

Native pixels are windowed as a viewer would (rescale slope and intercept, the first
window of the instance, else the frame's own range; MONOCHROME1 inverted). Compressed
frames are decoded by Pillow when it can (JPEG baseline, JPEG 2000 where Pillow has
OpenJPEG); anything else is :class:`NotSupportedError`. Needs numpy and Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from ..errors import NotSupportedError
from ..transcode import can_decode, to_native
from ..transfer import NATIVE, label_of
from .frames import frame_size

__all__ = ["render_frame"]


def _number(meta: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    value = meta.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


def _modules() -> tuple[Any, Any]:
    try:
        import numpy
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - both are in the gateway's requirements
        raise NotSupportedError(
            "rendered", reason=f"rendering needs numpy and Pillow ({exc.name} is missing)"
        ) from None
    return numpy, Image


def _native_image(frame: bytes, meta: Mapping[str, Any], auto_window: bool) -> Any:
    np, Image = _modules()
    rows, columns = int(_number(meta, "Rows") or 0), int(_number(meta, "Columns") or 0)
    samples = int(_number(meta, "SamplesPerPixel", 1) or 1)
    bits = int(_number(meta, "BitsAllocated", 16) or 16)
    signed = int(_number(meta, "PixelRepresentation", 0) or 0) == 1
    photometric = str(meta.get("PhotometricInterpretation") or ("RGB" if samples == 3 else "MONOCHROME2")).upper()
    dtypes = {8: "i1" if signed else "u1", 16: "<i2" if signed else "<u2", 32: "<i4" if signed else "<u4"}
    if bits not in dtypes:
        raise NotSupportedError("rendered", reason=f"{bits}-bit pixels")
    array = np.frombuffer(frame, dtype=dtypes[bits], count=rows * columns * samples)
    if samples == 3:
        planar = int(_number(meta, "PlanarConfiguration", 0) or 0)
        array = array.reshape((3, rows, columns)).transpose(1, 2, 0) if planar else array.reshape((rows, columns, 3))
        if bits != 8:
            array = (array.astype("f8") / array.max() * 255.0) if array.max() else array * 0
        image = Image.fromarray(np.ascontiguousarray(array.astype("u1")), "YCbCr" if "YBR" in photometric else "RGB")
        return image.convert("RGB")
    if samples != 1:
        raise NotSupportedError("rendered", reason=f"{samples} samples per pixel")
    values = array.reshape((rows, columns)).astype("f8")
    stored = int(_number(meta, "BitsStored", bits) or bits)
    if not signed and stored < bits:
        values = np.mod(values, float(1 << stored))
    slope, intercept = _number(meta, "RescaleSlope", 1.0) or 1.0, _number(meta, "RescaleIntercept", 0.0) or 0.0
    values = values * slope + intercept
    center, width = _number(meta, "WindowCenter"), _number(meta, "WindowWidth")
    if auto_window or center is None or not width or width <= 0:
        low, high = float(values.min()), float(values.max())
    else:
        low, high = center - width / 2.0, center + width / 2.0
    span = high - low if high > low else 1.0
    scaled = np.clip((values - low) / span, 0.0, 1.0) * 255.0
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return Image.fromarray(np.ascontiguousarray(scaled.astype("u1")), "L")


def _samples(meta: Mapping[str, Any]) -> int:
    value = meta.get("SamplesPerPixel")
    try:
        return int(value[0] if isinstance(value, list) else value or 1)
    except (TypeError, ValueError):
        return 1


def render_frame(
    frame: bytes,
    meta: Mapping[str, Any],
    *,
    viewport: tuple[int, int] | None = None,
    media_type: str = "image/png",
    auto_window: bool = False,
) -> bytes:
    """One frame as ``image/png`` or ``image/jpeg``, fitted inside ``viewport`` (width, height).

    ``auto_window`` stretches the frame's own range instead of the instance's window: a
    thumbnail must show something even when the stored window (a lung window, say) leaves
    this frame black.
    """
    _, Image = _modules()
    ts = label_of(frame)
    if ts is not None and ts not in NATIVE and can_decode(ts):  # decoded as pydicom does: colour as RGB
        frame = to_native(frame, meta, ts)
        if _samples(meta) > 1:
            meta = {**meta, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0}
    size = frame_size(meta)
    if size is not None and len(frame) in (size, size + 1):
        image = _native_image(frame[:size], meta, auto_window)
    else:
        try:
            image = Image.open(io.BytesIO(frame))
            image.load()
        except Exception:
            raise NotSupportedError("rendered", reason="this frame's compression cannot be decoded here") from None
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB" if "RGB" in image.mode or image.mode in ("P", "YCbCr", "CMYK") else "L")
    if viewport is not None:
        width, height = viewport
        image.thumbnail((max(1, width), max(1, height)), Image.Resampling.LANCZOS)
        if image.width < width and image.height < height:  # small images grow to the viewport too
            factor = min(width / image.width, height / image.height)
            image = image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))))
    out = io.BytesIO()
    if media_type == "image/jpeg":
        image.save(out, format="JPEG", quality=90)
    else:
        image.save(out, format="PNG")
    return out.getvalue()
