"""The folder of retrieved instances: atomic writes, series manifests, bounded by size and age.

Layout under the cache folder::

    instances/<2 hex>/<SOPInstanceUID>.dcm    one Part-10 file per instance, as received
    series/<SeriesInstanceUID>.json           the series' naturalized metadata, written last
    .lock                                     flock(2) held while evicting

Every file is written under a temporary name and renamed into place, so a reader (this
process or another sharing the folder) sees a whole file or none. A series manifest is only
written after all its instances are, and eviction removes the manifest before the files: a
manifest that is present names files that were whole. A reader that still finds a file gone
(another process evicted it meanwhile) treats it as a miss and retrieves again.

Eviction runs after a series is committed, at most once per ``maxBytes / 8`` bytes written or
once a minute, so its directory scan is amortised; it drops series older than
``retentionMinutes`` and then the least recently used ones until the folder holds at most
``maxBytes``. Reading a manifest marks it used (its mtime).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from .config import CacheConfig
from .errors import CacheError

__all__ = ["InstanceCache"]

_TEMP = ".tmp-"
_UID_CHARS = frozenset("0123456789.")


def _check_uid(uid: str) -> str:
    if not uid or len(uid) > 64 or not set(uid) <= _UID_CHARS:
        raise CacheError(f"dimse cache: {uid!r} is not a UID; refusing it as a file name")
    return uid


class InstanceCache:
    """One cache folder; thread-safe, and safe with other processes using the same folder."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.root = Path(config.folder)
        self._lock = threading.Lock()
        self._written_since_evict = 0
        self._last_evict = 0.0

    # -- paths -------------------------------------------------------------------------------

    def instance_path(self, sop_uid: str) -> Path:
        _check_uid(sop_uid)
        bucket = hashlib.blake2s(sop_uid.encode(), digest_size=1).hexdigest()
        return self.root / "instances" / bucket / f"{sop_uid}.dcm"

    def manifest_path(self, series_uid: str) -> Path:
        return self.root / "series" / f"{_check_uid(series_uid)}.json"

    def cached_instance(self, sop_uid: str) -> Path | None:
        path = self.instance_path(sop_uid)
        return path if path.is_file() else None

    # -- writing -----------------------------------------------------------------------------

    def _write(self, final: Path, data: bytes) -> None:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = final.with_name(f"{_TEMP}{secrets.token_hex(6)}-{final.name}")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise self._error(exc) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(temp, final)  # identical content from another process: either copy is whole
        except OSError as exc:
            raise self._error(exc) from None
        finally:
            if temp.exists():
                temp.unlink()

    def _error(self, exc: OSError) -> CacheError:
        what = {
            errno.EROFS: "is read-only",
            errno.EACCES: "cannot be written (permission denied)",
            errno.EPERM: "cannot be written (permission denied)",
            errno.ENOSPC: "is full (no space left on the device)",
            errno.EDQUOT: "is full (disk quota exceeded)",
        }.get(exc.errno or 0, f"cannot be written: {exc.strerror or exc}")
        return CacheError(f"dimse: the cache folder {str(self.root)!r} {what}")

    def put_instance(self, sop_uid: str, data: bytes) -> Path:
        """Write one received instance (Part-10 bytes); returns its path."""
        if len(data) > self.config.max_bytes:
            raise CacheError(
                f"dimse: instance {sop_uid} ({len(data)} bytes) is larger than the cache's maxBytes "
                f"({self.config.max_bytes}) in {str(self.root)!r}"
            )
        path = self.instance_path(sop_uid)
        self._write(path, data)
        with self._lock:
            self._written_since_evict += len(data)
        return path

    def commit_series(self, study_uid: str, series_uid: str, instances: list[dict[str, Any]], size: int) -> None:
        """Write the series manifest (after all its instances), then evict if due."""
        document = {"study": study_uid, "series": series_uid, "bytes": size, "instances": instances}
        self._write(self.manifest_path(series_uid), orjson.dumps(document))
        self.maybe_evict()

    def load_series(self, series_uid: str) -> list[dict[str, Any]] | None:
        """The cached naturalized instances of a series, or None (absent, expired or incomplete)."""
        path = self.manifest_path(series_uid)
        try:
            info = path.stat()
            if time.time() - info.st_mtime > self.config.retention_minutes * 60:
                return None
            document = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        instances = document.get("instances") or []
        for inst in instances:
            if not self.instance_path(str(inst.get("SOPInstanceUID"))).is_file():
                return None  # evicted by another process meanwhile: retrieve again
        with contextlib.suppress(OSError):  # a read-only cache still serves what it holds
            os.utime(path)  # used: the least recently used series go first
        return instances

    # -- eviction ----------------------------------------------------------------------------

    def maybe_evict(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = self._written_since_evict > self.config.max_bytes // 8 or now - self._last_evict > 60
            if not due:
                return
            self._written_since_evict = 0
            self._last_evict = now
        self.evict()

    def evict(self) -> None:
        """Drop expired series, then the least recently used, until the folder is within ``maxBytes``."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = open(self.root / ".lock", "a+b")  # noqa: SIM115 - closed below
        except OSError:
            return  # a read-only cache evicts nothing
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._evict_locked()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _evict_locked(self) -> None:
        deadline = time.time() - self.config.retention_minutes * 60
        manifests: list[tuple[float, Path]] = []
        for entry in _scan(self.root / "series"):
            if entry.name.endswith(".json") and not entry.name.startswith(_TEMP):
                manifests.append((entry.stat().st_mtime, Path(entry.path)))
        manifests.sort()
        sizes: dict[str, tuple[int, float]] = {}
        for bucket in _scan(self.root / "instances"):
            for entry in _scan(Path(bucket.path)):
                st = entry.stat()
                if entry.name.startswith(_TEMP):
                    if time.time() - st.st_mtime > 3600:  # a writer that died long ago
                        _unlink(Path(entry.path))
                    continue
                sizes[entry.name[:-4]] = (st.st_size, st.st_mtime)
        total = sum(size for size, _ in sizes.values())
        owned: set[str] = set()
        keep: list[tuple[float, Path, list[str]]] = []
        for mtime, path in manifests:
            try:
                sops = [str(i["SOPInstanceUID"]) for i in orjson.loads(path.read_bytes()).get("instances", [])]
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                _unlink(path)
                continue
            if mtime < deadline:
                total -= self._drop(path, sops, sizes)
            else:
                keep.append((mtime, path, sops))
                owned.update(sops)
        for sop, (size, mtime) in list(sizes.items()):
            if sop not in owned and mtime < deadline:  # orphans: instances of failed retrieves
                _unlink(self.instance_path(sop))
                total -= size
                sizes.pop(sop)
        for _mtime, path, sops in keep:
            if total <= self.config.max_bytes:
                break
            total -= self._drop(path, sops, sizes)

    def _drop(self, manifest: Path, sops: Iterable[str], sizes: dict[str, tuple[int, float]]) -> int:
        _unlink(manifest)  # first: a manifest present always names whole files
        freed = 0
        for sop in sops:
            if sop in sizes:
                freed += sizes.pop(sop)[0]
                _unlink(self.instance_path(sop))
        return freed

    def usage(self) -> int:
        """Bytes held in instance files (a full scan: for tests and the health line)."""
        return sum(e.stat().st_size for b in _scan(self.root / "instances") for e in _scan(Path(b.path)))


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
