"""Scanning a dicomlocal folder into its index, incrementally by mtime and size.

A re-index stats every file and rereads only those whose mtime or size changed (or that
were unreadable last time); rows of deleted files go, and the series and study aggregates of
the studies a change touches are rebuilt. Work is committed in chunks, so an interrupted pass
keeps what it did.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from datasources.errors import BackendError

from .config import INDEX_FILE_NAME
from .files import SERIES_KEYS, STUDY_KEYS, FileProblem, HeaderInfo, read_index_header
from .paths import TEMP_PREFIX, inside
from .schema import NOT_REJECTED, IndexDatabase

__all__ = ["IndexReport", "Progress", "ScanningIndex", "Skipped", "as_number", "chunks"]

#: ``progress(done, total, path)``: ``total`` is ``None`` while the folder is being listed.
Progress = Callable[[int, "int | None", str], None]

_CHUNK = 256
# an index in the root (this source's or another configuration's) is never data
_INDEX_NAMES = frozenset(INDEX_FILE_NAME + suffix for suffix in ("", "-wal", "-shm", "-journal", ".lock"))


@contextlib.contextmanager
def _run_lock(index_path: Any) -> Iterator[None]:
    """One reindex at a time per index, across processes: an exclusive ``flock`` on
    ``<index>.lock`` (a run that waits then finds the files indexed, unchanged). Where
    ``fcntl`` does not exist, or the lock file cannot be made, runs are not serialized and the
    duplicate check alone keeps concurrent runs right."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        handle = open(f"{index_path}.lock", "a+b")  # noqa: SIM115
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class Skipped(NamedTuple):
    """A file (or folder) that is not in the index, and why."""

    path: str
    reason: str


@dataclass
class IndexReport:
    """What one index pass did. Paths are relative to the root, with ``/``."""

    root: str
    index_file: str
    indexed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unchanged: int = 0
    read: list[str] = field(default_factory=list)
    studies: int = 0
    instances: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "indexFile": self.index_file,
            "indexed": self.indexed,
            "updated": self.updated,
            "removed": self.removed,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "unchanged": self.unchanged,
            "read": len(self.read),
            "studies": self.studies,
            "instances": self.instances,
            "seconds": round(self.seconds, 3),
        }


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (SQLite caps the parameters of one statement)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_number(value: Any) -> float | None:
    """The value as a float, or None when it is not a number (SeriesNumber may be anything)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class ScanningIndex(IndexDatabase):
    """An index that walks its folder and brings its rows up to date (``reindex``, ``add_file``)."""

    def _ignored(self) -> set[str]:
        assert self.index_path is not None
        index = os.path.realpath(self.index_path)
        return {index, index + "-wal", index + "-shm", index + "-journal", index + ".lock"}

    def walk(self, progress: Progress | None = None) -> tuple[dict[str, tuple[str, int, int]], list[Skipped]]:
        """Every regular file under the root: ``{relative path: (path to open, mtime_ns, size)}``, and problems.

        A root that cannot be listed raises :class:`BackendError`; a sub-folder that cannot is a problem.
        """
        root = self._root()
        follow, recursive = self.config.follow_symlinks, self.config.recursive
        ignored = self._ignored()
        files: dict[str, tuple[str, int, int]] = {}
        problems: list[Skipped] = []
        visited = {root}
        stack: list[tuple[str, str]] = [(root, "")]
        while stack:
            folder, rel_folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                if not rel_folder:
                    # an unmounted drive or a deleted folder must not empty the index
                    reason = exc.strerror or exc
                    raise BackendError(
                        f"dicomlocal: cannot list the root folder {root!r}: {reason}; the index is unchanged"
                    ) from None
                problems.append(Skipped(rel_folder, f"cannot list the folder: {exc.strerror or exc}"))
                continue
            subfolders: list[tuple[str, str]] = []
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX) or entry.name in _INDEX_NAMES or entry.path in ignored:
                    continue
                rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
                try:
                    if entry.is_symlink():
                        if not follow:
                            problems.append(Skipped(rel, "symbolic link, not followed (followSymlinks is false)"))
                            continue
                        target = os.path.realpath(entry.path)
                        if not inside(target, root):
                            problems.append(Skipped(rel, "symbolic link pointing outside the root, refused"))
                            continue
                        st = os.stat(entry.path)
                        if stat.S_ISDIR(st.st_mode):
                            if recursive and target not in visited:
                                visited.add(target)
                                subfolders.append((entry.path, rel))
                        elif stat.S_ISREG(st.st_mode):
                            files[rel] = (entry.path, st.st_mtime_ns, st.st_size)
                        else:
                            problems.append(Skipped(rel, "not a regular file (a pipe, socket or device)"))
                    elif entry.is_dir(follow_symlinks=False):
                        if recursive:
                            real = os.path.realpath(entry.path)
                            if real not in visited:
                                visited.add(real)
                                subfolders.append((entry.path, rel))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        files[rel] = (entry.path, st.st_mtime_ns, st.st_size)
                    else:
                        problems.append(Skipped(rel, "not a regular file (a pipe, socket or device)"))
                except OSError as exc:
                    problems.append(Skipped(rel, f"cannot stat: {exc.strerror or exc}"))
            stack.extend(reversed(subfolders))  # depth first, in name order
            if progress is not None:
                progress(len(files), None, rel_folder or ".")
        return files, problems

    # -- indexing ------------------------------------------------------------------------

    def reindex(self, progress: Progress | None = None) -> IndexReport:
        """Bring the index up to date with the folder; only new or changed files are read."""
        started = time.perf_counter()
        root = self._root()
        with self._write_lock, _run_lock(self.index_path):
            report = IndexReport(root=root, index_file=str(self.index_path))
            files, walk_problems = self.walk(progress)
            known = {
                row[0]: (row[1], row[2], row[3])
                for row in self._rows("SELECT path, mtime_ns, size, study_uid FROM instances")
            }
            cached = {
                row[0]: (row[1], row[2], row[3])
                for row in self._rows("SELECT path, mtime_ns, size, reason FROM skipped WHERE cacheable = 1")
            }
            to_read: list[str] = []
            keep_skipped: list[tuple[str, int, int, str, int]] = []
            for rel, (_path, mtime, size) in files.items():
                old = known.get(rel)
                if old is not None and old[0] == mtime and old[1] == size:
                    report.unchanged += 1
                    continue
                verdict = cached.get(rel)
                if old is None and verdict is not None and verdict[0] == mtime and verdict[1] == size:
                    report.unchanged += 1
                    report.skipped.append(Skipped(rel, verdict[2]))
                    keep_skipped.append((rel, mtime, size, verdict[2], 1))
                    continue
                to_read.append(rel)
            # files in a folder that could not be listed are kept as they were, not taken for deleted
            unlisted = tuple(p.path + "/" for p in walk_problems if p.reason.startswith("cannot list the folder"))
            gone = [rel for rel in known if rel not in files and not rel.startswith(unlisted or ("\0",))]

            with self._transaction() as tx:
                affected: set[str] = set()
                for rel in gone:
                    tx.execute("DELETE FROM instances WHERE path = ?", (rel,))
                    affected.add(known[rel][2])
                tx.execute("DELETE FROM skipped")
                tx.executemany("INSERT INTO skipped VALUES (?, ?, ?, ?, ?)", keep_skipped)
                tx.executemany(
                    "INSERT OR REPLACE INTO skipped VALUES (?, NULL, NULL, ?, 0)",
                    [(p.path, p.reason) for p in walk_problems],
                )
                self._recompute(tx, affected)
            report.removed.extend(gone)
            report.skipped.extend(walk_problems)

            done = 0
            for chunk in chunks(to_read, _CHUNK):
                results: list[tuple[str, HeaderInfo | FileProblem]] = []
                for rel in chunk:
                    path, mtime, size = files[rel]
                    try:
                        results.append((rel, read_index_header(path)))
                    except FileProblem as problem:
                        results.append((rel, problem))
                    report.read.append(rel)
                    done += 1
                    if progress is not None:
                        progress(done, len(to_read), rel)
                with self._transaction() as tx:
                    self._apply(tx, results, files, known, report)
            counts = self._rows("SELECT COUNT(*), COALESCE(SUM(n_instances), 0) FROM studies")[0]
            report.studies, report.instances = int(counts[0]), int(counts[1])
        report.skipped.sort()
        report.seconds = time.perf_counter() - started
        return report

    def _apply(
        self,
        tx: sqlite3.Connection,
        results: Iterable[tuple[str, HeaderInfo | FileProblem]],
        files: dict[str, tuple[str, int, int]],
        known: dict[str, tuple[int, int, str]],
        report: IndexReport,
    ) -> None:
        affected: set[str] = set()
        for rel, result in results:
            _path, mtime, size = files[rel]
            old = known.get(rel)
            if old is not None:
                tx.execute("DELETE FROM instances WHERE path = ?", (rel,))
                affected.add(old[2])
            if isinstance(result, FileProblem):
                tx.execute(
                    "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?)",
                    (rel, mtime, size, result.reason, int(result.cacheable)),
                )
                report.skipped.append(Skipped(rel, result.reason))
                if old is not None:
                    report.removed.append(rel)
                continue
            if old is None and tx.execute("DELETE FROM instances WHERE path = ?", (rel,)).rowcount:
                affected.add(result.study_uid)  # another run indexed this very file meanwhile
            duplicate = tx.execute(
                "SELECT path FROM instances WHERE sop_uid = ? AND path != ?", (result.sop_uid, rel)
            ).fetchone()  # a file is never a duplicate of itself
            if duplicate is not None:
                reason = f"duplicate SOPInstanceUID {result.sop_uid}: already indexed from {duplicate[0]}"
                tx.execute("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, 0)", (rel, mtime, size, reason))
                report.skipped.append(Skipped(rel, reason))
                if old is not None:
                    report.removed.append(rel)
                continue
            self._insert(tx, rel, mtime, size, result)
            affected.add(result.study_uid)
            (report.updated if old is not None else report.indexed).append(rel)
        self._recompute(tx, affected)

    @staticmethod
    def _insert(tx: sqlite3.Connection, rel: str, mtime: int, size: int, info: HeaderInfo) -> None:
        tx.execute(
            "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (info.sop_uid, info.study_uid, info.series_uid, rel, mtime, size, info.transfer_syntax,
             orjson.dumps(info.attrs)),
        )  # fmt: skip
        tx.execute("DELETE FROM skipped WHERE path = ?", (rel,))

    def _recompute(self, tx: sqlite3.Connection, study_uids: Iterable[str]) -> None:
        """Rebuild the series and study rows of these studies from their instances (rejected series left out)."""
        for study_uid in study_uids:
            rows = tx.execute(
                "SELECT i.series_uid, i.attrs FROM instances i "
                f"WHERE i.study_uid = ? AND {NOT_REJECTED} ORDER BY i.path",
                (study_uid,),
            ).fetchall()
            tx.execute("DELETE FROM series WHERE study_uid = ?", (study_uid,))
            if not rows:
                tx.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
                continue
            study: dict[str, Any] = {}
            series: dict[str, list[Any]] = {}
            for series_uid, blob in rows:
                attrs = orjson.loads(blob)
                for key in STUDY_KEYS:
                    if key not in study and attrs.get(key) is not None:
                        study[key] = attrs[key]
                entry = series.get(series_uid)
                if entry is None:
                    entry = series[series_uid] = [{}, 0]
                for key in SERIES_KEYS:
                    if key not in entry[0] and attrs.get(key) is not None:
                        entry[0][key] = attrs[key]
                entry[1] += 1
            tx.executemany(
                "INSERT INTO series VALUES (?, ?, ?, ?, ?)",
                [
                    (study_uid, uid, as_number(a.get("SeriesNumber")), n, orjson.dumps(a))
                    for uid, (a, n) in series.items()
                ],
            )
            modalities = sorted({a["Modality"] for a, _ in series.values() if isinstance(a.get("Modality"), str)})
            tx.execute(
                "INSERT OR REPLACE INTO studies VALUES (?, ?, ?, ?, ?, ?, ?)",
                (study_uid, study.get("StudyDate"), study.get("StudyTime"), len(series), len(rows),
                 orjson.dumps(modalities), orjson.dumps(study)),
            )  # fmt: skip

    def add_file(self, rel: str, path: str) -> HeaderInfo:
        """Index one file just written (``store.dicom``); a problem raises :class:`FileProblem`."""
        info = read_index_header(path)
        st = os.stat(path)
        with self._write_lock, self._transaction() as tx:
            duplicate = tx.execute("SELECT path FROM instances WHERE sop_uid = ?", (info.sop_uid,)).fetchone()
            if duplicate is not None:
                raise FileProblem(f"duplicate SOPInstanceUID {info.sop_uid}: already indexed from {duplicate[0]}")
            tx.execute("DELETE FROM instances WHERE path = ?", (rel,))
            self._insert(tx, rel, st.st_mtime_ns, st.st_size, info)
            self._recompute(tx, [info.study_uid])
        return info
