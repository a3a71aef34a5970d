"""Read-only file objects over a buffer, without copying it.

``io.BytesIO(view)`` copies the whole buffer; a STOW part that is a ``memoryview`` of the
gateway's memory-mapped spool must be readable (its header by pydicom) without being brought
into memory. :func:`reader` gives a seekable raw file over any bytes-like object: each
``read(n)`` copies only the ``n`` bytes asked for.
"""

from __future__ import annotations

import io
import os
from typing import Any

__all__ = ["BufferReader", "reader"]


class BufferReader(io.RawIOBase):
    """A read-only, seekable raw file over a bytes-like object (no copy of the whole)."""

    def __init__(self, data: Any) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")  # a view of the caller's buffer (or view): no copy
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check()
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check()
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: len(self._view)}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence!r}")
        position = base + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        self._check()
        target = memoryview(buffer).cast("B")
        chunk = self._view[self._position : self._position + len(target)]
        size = len(chunk)
        target[:size] = chunk
        chunk.release()
        target.release()
        self._position += size
        return size

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        end = len(self._view) if size is None or size < 0 else self._position + size
        data = bytes(self._view[self._position : end])
        self._position += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        """Release the view (so the buffer's owner, an ``mmap``, can close)."""
        if not self.closed:
            self._view.release()
        super().close()

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed BufferReader")


def reader(data: Any) -> BufferReader:
    """A raw file over ``data`` (bytes, bytearray, memoryview or mmap); close it when done."""
    return BufferReader(data)
