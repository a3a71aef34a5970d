"""Entry points of the ``datasources.extensions`` group, cached between runs (as stevedore does).

Scanning every installed distribution's ``entry_points.txt`` with importlib-metadata costs more
than everything else a host does at start. The answer only changes when a distribution is
installed or removed, which changes the modification time of the ``sys.path`` folder that
holds its ``.dist-info``. So the cache (a small text file per interpreter, group and
``sys.path``, so that two settings of ``PYTHONPATH`` used in turn keep their own) records
those folders' times; files of paths unused for a month are removed by the next scan.
``sys.path[0]`` (the current directory under ``python -c``, a script's or the console script's
folder) is left out of the key, and watched only if it held a distribution when the cache was
written: writing files in the current directory, or alternating the CLI with ``python -c``,
never forces a rescan.
Set ``DATASOURCES_ENTRY_POINT_CACHE=0`` to always scan.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CachedEntryPoint", "cache_dir", "entry_points"]

_FORMAT = 3


class CachedEntryPoint(NamedTuple):
    """What discovery needs of an entry point: its name, target, and its distribution's version."""

    name: str
    value: str
    version: str | None

    def load(self) -> Any:
        module_name, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module_name.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "datasources")


def cache_dir() -> Path:
    """The folder of the cache files (pathlib is imported here only: a start does not need it)."""
    from pathlib import Path

    return Path(_cache_root())


def _checksum(data: bytes) -> str:
    """64-bit FNV-1a of the key, in 16 hex digits: enough to tell interpreters and paths apart.

    A few hundred bytes, so plain Python is cheaper than loading zlib or hashlib at start.
    """
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def _cache_path(group: str) -> str:
    """One file per interpreter, group and ``sys.path`` (without ``sys.path[0]``, see the module doc).

    Keying on the path too (as stevedore does) lets two settings of ``PYTHONPATH`` used in turn
    (a test run and the CLI, or a benchmark's two cases) each keep their own answer instead of
    invalidating one another's on every start.
    """
    parts = (str(_FORMAT), group, sys.version, sys.prefix, sys.executable, *sys.path[1:])
    text = "\n".join(parts).encode("utf-8", "surrogateescape")
    return os.path.join(_cache_root(), f"entry-points-{_checksum(text)}.tsv")


def _mtime(entry: str) -> str:
    try:
        return str(os.stat(entry or ".").st_mtime_ns)
    except OSError:
        return "-"


def _watched(include_first: bool) -> dict[str, str]:
    """The folders whose change may mean a distribution came or went, with their times.

    ``sys.path[0]`` (the current directory under ``python -c``, a script's or the console
    script's folder) is left out unless it held a distribution when the cache was written.
    """
    entries = sys.path if include_first else sys.path[1:]
    return {e: _mtime(e) for e in dict.fromkeys(entries)}


def _dist_version(ep: Any) -> str | None:
    """The version from the ``NAME-VERSION.dist-info`` folder name when there is one.

    ``dist.version`` parses METADATA with the email package, which alone costs more than the rest
    of a host's start; the folder name says the same (its name part is normalized, without ``-``).
    """
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    folder = getattr(getattr(dist, "_path", None), "name", "")
    stem = folder.removesuffix(".dist-info")
    if stem != folder and stem.count("-") == 1:
        return stem.partition("-")[2]
    return getattr(dist, "version", None)


def _scan(group: str) -> tuple[list[CachedEntryPoint], set[str]]:
    """The group's entry points, and the ``sys.path`` entries that hold any distribution at all."""
    from importlib_metadata import distributions
    from importlib_metadata import entry_points as find

    found = [CachedEntryPoint(ep.name, ep.value, _dist_version(ep)) for ep in find(group=group)]
    holders = set()
    for dist in distributions():
        folder = getattr(dist, "_path", None)
        if folder is not None:
            holders.add(str(folder.parent))
    on_path = {os.path.abspath(e or "."): e for e in sys.path}
    return found, {on_path[h] for h in holders if h in on_path}


def _parse_row(line: str) -> CachedEntryPoint:
    """One cache line: name, target and version separated by tabs (none of them can hold a tab)."""
    name, value, version = line.split("\t")
    return CachedEntryPoint(name, value, version or None)


def _read(path: str) -> list[CachedEntryPoint] | None:
    """The cached entry points, or None when the file is missing, damaged or out of date."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, ValueError):
        return None
    watched: dict[str, str] = {}
    rows: list[CachedEntryPoint] = []
    try:
        for line in lines:
            if line.startswith("#path\t"):
                _, entry, mtime = line.split("\t")
                watched[entry] = mtime
            elif line:
                rows.append(_parse_row(line))
    except (ValueError, TypeError):
        return None
    if _watched(bool(sys.path) and sys.path[0] in watched) != watched:
        return None
    return sorted(rows)


def entry_points(group: str) -> list[CachedEntryPoint]:
    """The group's entry points, sorted by name; from the cache while no distribution came or went."""
    if os.environ.get("DATASOURCES_ENTRY_POINT_CACHE", "1") == "0":
        return sorted(_scan(group)[0])
    path = _cache_path(group)
    cached = _read(path)
    if cached is not None:
        return cached
    found, holders = _scan(group)
    found.sort()
    try:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        import tempfile

        # written to a temporary name and renamed: a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".entry-points-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            first_holds = bool(sys.path) and sys.path[0] in holders
            handle.writelines(f"#path\t{e}\t{m}\n" for e, m in _watched(first_holds).items())
            handle.writelines(f"{ep.name}\t{ep.value}\t{ep.version or ''}\n" for ep in found)
        os.replace(tmp, path)
        _prune(folder, keep=path)
    except OSError:
        pass  # a read-only home is no reason to fail: the next start scans again
    return found


STALE_AFTER = 30 * 24 * 3600  # seconds without a rewrite after which another path's cache file goes


def _prune(folder: str, keep: str) -> None:
    """Remove other ``sys.path`` settings' cache files not rewritten for :data:`STALE_AFTER`.

    One file per ``sys.path`` would otherwise pile up (every temporary virtual environment or
    ``PYTHONPATH`` leaves one); one still in use is at worst rescanned once. Runs only after a
    scan, never on a start that reads the cache.
    """
    import time

    limit = time.time() - STALE_AFTER
    for name in os.listdir(folder):
        full = os.path.join(folder, name)
        if not (name.startswith("entry-points-") and name.endswith(".tsv")) or full == keep:
            continue
        try:
            if os.stat(full).st_mtime < limit:
                os.remove(full)
        except OSError:
            pass  # removed by a concurrent start, or not ours to remove
