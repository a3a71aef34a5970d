"""Frames and bulk data from a cached Part-10 file, each frame labelled with the file's transfer syntax.

The frames are cut as the ``dicomlocal`` source cuts them (its :mod:`files` helpers), and each
is the host's ``datasources.transfer.Frame`` (``bytes`` carrying ``transfer_syntax``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from datasources.errors import CorruptFileError, NotFoundError
from datasources.transfer import Frame, labelled

from ..dicomlocal.files import bulk_value, frames_from_file

__all__ = ["Frame", "bulk_value", "labelled", "read_cached", "read_labelled_frames"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def read_cached(locate: Callable[[], str], read: Callable[[str], T], what: str) -> T:
    """``read`` the cached file ``locate()`` gives (retrieving it when it is not cached). A file
    gone meanwhile (another process evicted it) or gone bad (``CorruptFileError``: overwritten,
    truncated) is retrieved again from the peer, once; the peer's own copy being bad stays a
    ``CorruptFileError``."""
    path = locate()
    try:
        return read(path)
    except FileNotFoundError:
        pass
    except CorruptFileError as exc:
        log.warning("dimse: %s; it is retrieved again", exc)
        with contextlib.suppress(OSError):
            os.unlink(path)  # a missing file makes its series a cache miss
    path = locate()
    try:
        return read(path)
    except FileNotFoundError:
        raise NotFoundError(f"dimse: {what} left the cache before it could be read") from None


def read_labelled_frames(path: str | Path, numbers: Sequence[int]) -> list[Frame]:
    """Frames (numbered from 1) of a cached file, as stored, each labelled with its transfer syntax.
    A cache file gone bad is ``CorruptFileError`` (dicomlocal's reader), named by its file name."""
    frames, ts = frames_from_file(path, numbers, f"dimse cache: {Path(path).name}")
    return [labelled(f, getattr(f, "transfer_syntax", None) or ts) for f in frames]
