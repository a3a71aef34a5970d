"""Frames of an instance from any source, and what media type they are.

A source that can hand out frames exposes ``retrieve.frames(study, series, sop, [n, ...])``
(frames counted from 1, as WADO-RS counts them; bytes as stored), and may add an awaitable
``retrieve.frames_async`` that the gateway awaits on its event loop first (the dicomweb source:
no thread hop, no ``requests`` on the way). For any other source the
gateway reads the instance's ``PixelData`` through ``retrieve.bulk_data_uri`` (or its inline
value) and cuts it into frames itself: native pixels by size, encapsulated ones by fragment.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..errors import MalformedResponseError, NotFoundError, NotSupportedError
from ..transfer import (
    BIG_ENDIAN,
    EXPLICIT_LE,
    MEDIA_FOR_TS,
    Frame,
    label_of,
    labelled,
    metadata_transfer_syntax,
    swap_bytes,
)

__all__ = [
    "EXPLICIT_LE",
    "MEDIA_FOR_TS",
    "call_bulk_data_uri",
    "frame_count",
    "frame_size",
    "is_encapsulated",
    "guess_native",
    "transfer_syntax_of",
    "source_frames",
    "split_pixel_data",
]

_ITEM_TAG = b"\xfe\xff\x00\xe0"


def _int(meta: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = meta.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


def frame_count(meta: Mapping[str, Any]) -> int:
    return max(1, _int(meta, "NumberOfFrames", 1) or 1)


def frame_size(meta: Mapping[str, Any]) -> int | None:
    """Bytes in one native frame (None when the image attributes are missing or bit-packed)."""
    rows, columns = _int(meta, "Rows"), _int(meta, "Columns")
    if not rows or not columns:
        return None
    bits = _int(meta, "BitsAllocated", 16) or 16
    samples = _int(meta, "SamplesPerPixel", 1) or 1
    total = rows * columns * samples * bits
    return total // 8 if total % 8 == 0 else None


def is_encapsulated(data: bytes) -> bool:
    """Encapsulated pixel data starts with the Basic Offset Table item (FFFE,E000)."""
    return data[:4] == _ITEM_TAG


def split_pixel_data(data: bytes, meta: Mapping[str, Any]) -> list[bytes]:
    """Every frame of a PixelData value: fragments unwrapped, or native frames cut by size."""
    count = frame_count(meta)
    if is_encapsulated(data):
        from pydicom.encaps import generate_frames

        try:
            return list(generate_frames(data, number_of_frames=count))
        except Exception as exc:
            raise MalformedResponseError(f"encapsulated pixel data cannot be split into frames: {exc}") from None
    size = frame_size(meta)
    if size is None:
        if count > 1:
            raise NotSupportedError("retrieve.frames", reason="multi-frame pixel data without usable image attributes")
        return [bytes(data)]
    if len(data) < size * count:
        raise MalformedResponseError(f"pixel data holds {len(data)} bytes, {count} frame(s) need {size * count}")
    return [bytes(data[i * size : (i + 1) * size]) for i in range(count)]


def transfer_syntax_of(meta: Mapping[str, Any]) -> str | None:
    """The transfer syntax an instance's metadata names, if any."""
    return metadata_transfer_syntax(meta)


def guess_native(frame: bytes, meta: Mapping[str, Any]) -> str | None:
    """Explicit VR LE when an unlabelled frame has exactly a native frame's size, else None."""
    size = frame_size(meta)
    return EXPLICIT_LE if size is not None and len(frame) in (size, size + 1) else None


@lru_cache(maxsize=64)
def _accepted(func: Callable[..., Any]) -> tuple[bool, frozenset[str]]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True, frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return True, frozenset()
    return False, frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def call_bulk_data_uri(data_source: Any, uri: str, **context: Any) -> bytes:
    """``retrieve.bulk_data_uri(uri, ...)`` with only the keyword arguments this source takes.

    Sources differ: dicomjson wants ``tag``, dicomweb the study and series UIDs of a
    relative URI, dicomlocal nothing. Each gets what its signature names.
    """
    func = data_source.retrieve.bulk_data_uri
    takes_all, names = _accepted(func)
    kwargs = context if takes_all else {k: v for k, v in context.items() if k in names}
    data = func(uri, **kwargs)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedResponseError(f"retrieve.bulk_data_uri gave {type(data).__name__}, not bytes")
    return data if isinstance(data, Frame) else bytes(data)  # a Frame keeps its transfer syntax


def frames_reader(data_source: Any) -> Callable[..., list[bytes]] | None:
    """The source's own frame reader: ``retrieve.frames``, else a ``frames`` helper, else None."""
    if "frames" in data_source.retrieve:
        return data_source.retrieve.frames
    if "frames" in data_source.helpers:
        return getattr(data_source.helpers, "frames")  # noqa: B009 - helpers resolve by name
    return None


async def source_frames_async(
    data_source: Any, study: str, series: str, sop: str, numbers: Sequence[int]
) -> list[bytes] | None:
    """Frames from the source's ``retrieve.frames_async`` on the event loop (no thread hop), or
    None when it has none or declines (it then wants ``retrieve.frames`` called in a thread)."""
    if "frames_async" not in data_source.retrieve:
        return None
    try:
        frames = await data_source.retrieve.frames_async(study, series, sop, list(numbers))
    except NotSupportedError:
        return None
    return None if frames is None else _checked(frames, numbers, "retrieve.frames_async")


def _checked(frames: Any, numbers: Sequence[int], member: str) -> list[bytes]:
    if not isinstance(frames, list | tuple):
        raise MalformedResponseError(f"{member} gave {type(frames).__name__}, not a list of frames")
    if len(frames) != len(numbers):
        raise MalformedResponseError(f"{member} gave {len(frames)} frames for {len(numbers)} asked")
    return [f if isinstance(f, Frame) else bytes(f) for f in frames]


def source_frames(
    data_source: Any,
    study: str,
    series: str,
    sop: str,
    numbers: Sequence[int],
    instance: Callable[[], Mapping[str, Any]],
) -> list[bytes]:
    """Frames ``numbers`` (from 1) of an instance; ``instance()`` gives its metadata when needed."""
    reader = frames_reader(data_source)
    if reader is not None:
        try:
            frames = reader(study, series, sop, list(numbers))
        except NotSupportedError:
            frames = None  # a merge source whose member has no reader: cut the pixel data here
        if frames is not None:
            return _checked(frames, numbers, "retrieve.frames")
    meta = instance()
    count = frame_count(meta)
    bad = [n for n in numbers if n > count]
    if bad:
        raise NotFoundError(f"frames {bad} do not exist; instance {sop} has {count} frame(s), from 1")
    value = meta.get("PixelData")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, Mapping) and value.get("InlineBinary"):
        data = base64.b64decode(value["InlineBinary"])
    elif isinstance(value, Mapping) and value.get("BulkDataURI"):
        data = call_bulk_data_uri(
            data_source,
            value["BulkDataURI"],
            tag="PixelData",
            study_instance_uid=study,
            series_instance_uid=series,
        )
    elif isinstance(value, bytes | bytearray):
        data = value
    else:
        raise NotFoundError(f"instance {sop} has no pixel data")
    frames = split_pixel_data(data, meta)
    ts = label_of(data) or transfer_syntax_of(meta)
    if ts is None and not is_encapsulated(data):
        ts = EXPLICIT_LE  # native pixel data cut by size
    bits = _int(meta, "BitsAllocated", 16) or 16
    if ts == BIG_ENDIAN and bits > 8:
        return [Frame(swap_bytes(frames[n - 1], bits // 8), EXPLICIT_LE) for n in numbers]
    return [labelled(frames[n - 1], ts) for n in numbers]
