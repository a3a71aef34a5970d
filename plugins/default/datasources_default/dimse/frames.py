"""Frames and bulk data from a cached Part-10 file, each frame labelled with the file's transfer syntax.

The frames are cut as the ``dicomlocal`` source cuts them (its :mod:`files` helpers), and each
is a ``Frame`` — ``bytes`` carrying ``transfer_syntax`` — the host's type where it has one
(``datasources.transfer``), else an equivalent defined here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..dicomlocal.files import _dcmread, _frames_of, bulk_value

__all__ = ["Frame", "bulk_value", "labelled", "read_labelled_frames"]

_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"})
_EXPLICIT_LE = "1.2.840.10008.1.2.1"

try:  # the host's frame type, where this version of datasources has it
    from datasources.transfer import Frame, labelled  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the host's version

    class Frame(bytes):  # type: ignore[no-redef]
        """Bytes of one frame with the transfer syntax they are encoded in."""

        transfer_syntax: str | None

        def __new__(cls, data: bytes | bytearray | memoryview, transfer_syntax: str | None = None) -> Frame:
            frame = super().__new__(cls, data)
            frame.transfer_syntax = transfer_syntax
            return frame

        def __reduce__(self) -> tuple[Any, ...]:
            return (Frame, (bytes(self), self.transfer_syntax))

        def __repr__(self) -> str:
            return f"Frame({len(self)} bytes, transfer_syntax={self.transfer_syntax!r})"

    def labelled(data: bytes | bytearray | memoryview, transfer_syntax: str | None) -> Frame:  # type: ignore[misc]
        """``data`` as a Frame of ``transfer_syntax`` (native syntaxes are labelled Explicit VR LE)."""
        return Frame(data, _EXPLICIT_LE if transfer_syntax in _NATIVE else transfer_syntax)


def read_labelled_frames(path: str | Path, numbers: Sequence[int]) -> list[Frame]:
    """Frames (numbered from 1) of a cached file, as stored, each labelled with its transfer syntax."""
    with open(path, "rb") as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _dcmread(fp)
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
        frames = _frames_of(ds, numbers, Path(path).name)
    return [labelled(f, getattr(f, "transfer_syntax", None) or ts) for f in frames]
