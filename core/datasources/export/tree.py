"""The destination of an export: a folder or an fsspec URL, written file by file, atomically.

Every file goes to a temporary name beside its final one (``NAME.tmp-RUN``) and is then
moved into place, so a reader (or a run killed at any point) sees either the old file or
the new one, whole. fsspec is imported only here: ``pip install 'datasources[export]'``.
"""

from __future__ import annotations

import gzip
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

import orjson

from ..errors import ExportError, NotFoundError

__all__ = ["TMP_MARK", "Tree", "gzip_json"]

#: What every temporary name carries; a later run removes leftovers with it.
TMP_MARK = ".tmp-"


def gzip_json(value: Any) -> bytes:
    """JSON, gzip-compressed with mtime 0: the same value gives the same bytes."""
    return gzip.compress(orjson.dumps(value), compresslevel=6, mtime=0)


class Tree:
    """A static DICOMweb tree at ``dest`` (a path or ``file://``, ``memory://``, ``s3://``... URL)."""

    def __init__(self, dest: str, **storage_options: Any) -> None:
        try:
            import fsspec.core
        except ImportError:
            raise ExportError("export needs fsspec: pip install 'datasources[export]'") from None
        try:
            fs, root = fsspec.core.url_to_fs(str(dest), **storage_options)
        except (ValueError, ImportError) as exc:
            raise ExportError(f"export destination {dest!r} cannot be opened: {exc}") from None
        self.dest = str(dest)
        self.fs = fs
        self.root = root.rstrip("/") if root not in ("/", "") else root
        self.local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        self.run = uuid.uuid4().hex[:12]
        self._dirs: set[str] = set()
        self._lock = threading.Lock()
        try:
            if fs.isfile(self.root):
                raise ExportError(f"export destination {dest!r} is a file, not a folder")
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"export destination {dest!r} cannot be read: {exc}") from None

    def __repr__(self) -> str:
        return f"Tree({self.dest!r})"

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if self.root else relative

    def _parent_made(self, full: str) -> None:
        if not self.local:
            return  # object stores and memory:// have no folders to make
        parent = full.rsplit("/", 1)[0]
        with self._lock:
            if parent in self._dirs:
                return
        self.fs.makedirs(parent, exist_ok=True)
        with self._lock:
            self._dirs.add(parent)

    # -- writing ---------------------------------------------------------------------------

    def write(self, relative: str, data: bytes) -> None:
        """Write one file atomically: a temporary name, then moved into place."""
        full = self.path(relative)
        tmp = f"{full}{TMP_MARK}{self.run}"
        self._parent_made(full)
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, full)

    @contextmanager
    def open_gzip(self, relative: str) -> Iterator[IO[bytes]]:
        """A gzip stream (mtime 0) to ``relative``, moved into place when the block ends without error."""
        full = self.path(relative)
        tmp = f"{full}{TMP_MARK}{self.run}"
        self._parent_made(full)
        ok = False
        with self.fs.open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as stream:
                yield stream
            ok = True
        if ok:
            self.fs.mv(tmp, full)

    def write_json_gz(self, relative: str, value: Any) -> None:
        self.write(relative, gzip_json(value))

    # -- reading ---------------------------------------------------------------------------

    def read(self, relative: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(relative)))
        except FileNotFoundError:
            raise NotFoundError(f"{relative} is not in the export tree {self.dest!r}") from None

    def read_json(self, relative: str, default: Any = None) -> Any:
        """A JSON file of the tree (gzip or not); ``default`` when it is missing or unreadable."""
        try:
            data = self.read(relative)
        except (NotFoundError, OSError):
            return default
        try:
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            return orjson.loads(data)
        except (OSError, EOFError, orjson.JSONDecodeError):
            return default  # a file from another tool, or damaged: treated as absent

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.path(relative)))

    def files_under(self, relative: str) -> list[str]:
        """Every file below ``relative``, as paths relative to the tree (empty when it is absent)."""
        base = self.path(relative)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        strip = len(self.root) + 1 if self.root else 0
        out = []
        for name in found:
            name = name if not self.root or name.startswith(self.root) else "/" + name
            out.append(name[strip:])
        return out

    def subfolders(self, relative: str) -> list[str]:
        """Names of the folders directly below ``relative``."""
        try:
            entries = self.fs.ls(self.path(relative), detail=True)
        except FileNotFoundError:
            return []
        return [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"]

    def temporary_files(self, relative: str) -> list[str]:
        """Temporary files (a killed run's) directly in ``relative``."""
        try:
            entries = self.fs.ls(self.path(relative), detail=True)
        except FileNotFoundError:
            return []
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file"]
        return [f"{relative}/{name}" for name in names if TMP_MARK in name]

    # -- removing --------------------------------------------------------------------------

    def remove(self, relatives: Iterable[str]) -> int:
        """Remove files; returns how many were removed (missing ones are not an error)."""
        count = 0
        for relative in relatives:
            try:
                self.fs.rm_file(self.path(relative))
                count += 1
            except FileNotFoundError:
                pass
        return count

    def remove_folder(self, relative: str) -> None:
        with suppress(FileNotFoundError):
            self.fs.rm(self.path(relative), recursive=True)
