"""Frames and bulk data from a cached Part-10 file, each frame labelled with the file's transfer syntax.

The frames are cut as the ``dicomlocal`` source cuts them (its :mod:`files` helpers), and each
is the host's ``datasources.transfer.Frame`` (``bytes`` carrying ``transfer_syntax``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from datasources.transfer import Frame, labelled

from ..dicomlocal.files import _dcmread, _frames_of, bulk_value

__all__ = ["Frame", "bulk_value", "labelled", "read_labelled_frames"]


def read_labelled_frames(path: str | Path, numbers: Sequence[int]) -> list[Frame]:
    """Frames (numbered from 1) of a cached file, as stored, each labelled with its transfer syntax."""
    with open(path, "rb") as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _dcmread(fp)
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
        frames = _frames_of(ds, numbers, Path(path).name)
    return [labelled(f, getattr(f, "transfer_syntax", None) or ts) for f in frames]
