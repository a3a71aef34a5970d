"""Paths in a dicomlocal folder: kept inside the root, named as image ids, written atomically.

Every path that reaches the disk goes through :func:`safe_path`, which refuses ``..``,
absolute paths outside the root, and symbolic links (all links when ``followSymlinks`` is
off; links that end up outside the root always) with :class:`UnsafePathError`. Files are
written whole or not at all (:func:`write_atomic`), never over an existing one.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote

from datasources.errors import InvalidQueryError, UnsafePathError

__all__ = ["TEMP_PREFIX", "ensure_folder", "file_uri", "inside", "safe_path", "split_uri", "write_atomic"]

#: Temporary files of :func:`write_atomic`; the scanner ignores them.
TEMP_PREFIX = ".datasources-tmp-"


def inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or under it (both normalized)."""
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
    if not inside(joined, root):
        raise UnsafePathError(f"dicomlocal: {text!r} is outside the root folder {root!r}")
    real = os.path.realpath(joined)
    if not inside(real, root):
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


def write_atomic(
    folder: str, name: str, data: bytes | bytearray | memoryview, on_written: Callable[[str], None] | None = None
) -> str:
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
