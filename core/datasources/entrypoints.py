"""Entry points of the ``datasources.extensions`` group, cached between runs (as stevedore does).

Scanning every installed distribution's ``entry_points.txt`` with importlib-metadata costs more
than everything else a host does at start. The answer only changes when a distribution is
installed or removed, which changes the modification time of a ``sys.path`` folder, so the
scan is cached in a small text file keyed by ``sys.path`` and those times. Set
``DATASOURCES_ENTRY_POINT_CACHE=0`` to always scan.
"""

from __future__ import annotations

import importlib
import os
import sys
import zlib
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["CachedEntryPoint", "cache_dir", "entry_points"]

_FORMAT = 2


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


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datasources"


def _fingerprint(group: str) -> str:
    parts = [str(_FORMAT), group, sys.version]
    for entry in sys.path:
        try:
            parts.append(f"{entry}\0{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\0-")
    text = "\n".join(parts).encode()
    # zlib is already loaded at start, hashlib is not; two checksums make a collision harmlessly rare
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}{len(text):x}"


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


def _scan(group: str) -> list[CachedEntryPoint]:
    from importlib_metadata import entry_points as find

    return [CachedEntryPoint(ep.name, ep.value, _dist_version(ep)) for ep in find(group=group)]


def _parse_row(line: str) -> CachedEntryPoint:
    """One cache line: name, target and version separated by tabs (none of them can hold a tab)."""
    name, value, version = line.split("\t")
    return CachedEntryPoint(name, value, version or None)


def entry_points(group: str) -> list[CachedEntryPoint]:
    """The group's entry points, sorted by name; from the cache when ``sys.path`` has not changed."""
    if os.environ.get("DATASOURCES_ENTRY_POINT_CACHE", "1") == "0":
        return sorted(_scan(group))
    path = cache_dir() / f"entry-points-{_fingerprint(group)}.tsv"
    try:
        return sorted(_parse_row(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
    except (OSError, ValueError, TypeError):
        pass
    found = sorted(_scan(group))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        # written to a temporary name and renamed: a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry-points-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{ep.name}\t{ep.value}\t{ep.version or ''}\n" for ep in found)
        os.replace(tmp, path)
        for old in path.parent.glob("entry-points-*.tsv"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only home is no reason to fail: the next start scans again
    return found
