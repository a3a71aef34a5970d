"""The SQLite index of a folder of DICOM files, re-indexed incrementally by mtime and size.

Tables: ``instances`` (one row per file: the QIDO attributes of all three levels as JSON,
the file's path relative to the root, its mtime and size), ``series`` and ``studies``
(aggregates rebuilt for the studies a change touches), ``skipped`` (files that are not
indexed, and why), ``rejected`` (series hidden by ``reject.series``) and ``meta``.

A re-index stats every file and rereads only those whose mtime or size changed (or that
were unreadable last time); rows of deleted files go. Work is committed in chunks, so an
interrupted pass keeps what it did. Connections come from a small pool, each used by one
thread at a time; one writer at a time per process (SQLite's own locking between
processes). WAL mode lets searches run while a pass writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from datasources.errors import BackendError, ConfigurationError

from .config import INDEX_FILE_NAME, LocalConfig
from .files import (
    SERIES_KEYS,
    STUDY_KEYS,
    TEMP_PREFIX,
    FileProblem,
    HeaderInfo,
    _inside,
    read_index_header,
)

__all__ = ["IndexReport", "LocalIndex", "Progress", "Skipped"]

log = logging.getLogger("datasources.dicomlocal")

#: ``progress(done, total, path)``: ``total`` is ``None`` while the folder is being listed.
Progress = Callable[[int, "int | None", str], None]

SCHEMA_VERSION = "1"
_CHUNK = 256
_POOL_SIZE = 8
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    transfer_syntax TEXT,
    attrs BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances (study_uid, series_uid);
CREATE TABLE IF NOT EXISTS series (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    series_number REAL,
    n_instances INTEGER NOT NULL,
    attrs BLOB NOT NULL,
    PRIMARY KEY (study_uid, series_uid)
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    study_date TEXT,
    study_time TEXT,
    n_series INTEGER NOT NULL,
    n_instances INTEGER NOT NULL,
    modalities BLOB NOT NULL,
    attrs BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped (
    path TEXT PRIMARY KEY,
    mtime_ns INTEGER,
    size INTEGER,
    reason TEXT NOT NULL,
    cacheable INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    PRIMARY KEY (study_uid, series_uid)
);
"""
# an index in the root (this source's or another configuration's) is never data
_INDEX_NAMES = frozenset(INDEX_FILE_NAME + suffix for suffix in ("", "-wal", "-shm", "-journal", ".lock"))
_TABLES = ("meta", "instances", "series", "studies", "skipped", "rejected")
_NOT_REJECTED = "NOT EXISTS (SELECT 1 FROM rejected r WHERE r.study_uid = i.study_uid AND r.series_uid = i.series_uid)"


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


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class LocalIndex:
    """The index of one root folder. ``open()`` does the first I/O; the constructor none."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        # a small pool, not one connection per thread: SQLite keeps the file descriptors of closed
        # connections while others in the process hold locks, so per-thread connections would leak
        # one per finished thread
        self._pool: list[sqlite3.Connection] = []
        self._generation = 0
        self._conn_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._open_lock = threading.Lock()
        self.root_real: str | None = None
        self.index_path: Path | None = None

    # -- opening -------------------------------------------------------------------------

    def open(self) -> None:
        """Check the root, place the index and create its tables (idempotent)."""
        with self._open_lock:
            if self.index_path is not None:
                return
            root = self.config.root
            if not root.is_dir():
                raise ConfigurationError(f"dicomlocal: root {str(root)!r} is not a folder")
            root_real = os.path.realpath(root)
            index_path = self.config.index_file()
            try:
                index_path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(index_path, timeout=30, isolation_level=None, check_same_thread=False)
            except (OSError, sqlite3.Error) as exc:
                raise BackendError(f"dicomlocal: cannot create the index {str(index_path)!r}: {exc}") from exc
            try:
                self._prepare(conn, root_real)
            except sqlite3.Error as exc:
                conn.close()
                raise BackendError(f"dicomlocal: cannot use the index {str(index_path)!r}: {exc}") from exc
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self.root_real = root_real
            self.index_path = index_path

    def _prepare(self, conn: sqlite3.Connection, root_real: str) -> None:
        conn.execute("PRAGMA busy_timeout = 30000")
        with contextlib.suppress(sqlite3.Error):  # a file system without shared memory keeps rollback journals
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if stored and (stored.get("schema") != SCHEMA_VERSION or stored.get("root") != root_real):
                log.warning(
                    "dicomlocal: the index %s was made for %s (schema %s); rebuilding it",
                    self.config.index_file(),
                    stored.get("root"),
                    stored.get("schema"),
                )
                for table in _TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('root', ?)", (root_real,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one operation, used by one thread at a time, then back to the pool."""
        if self.index_path is None:
            raise BackendError("dicomlocal: the index is not open (the source is not initialized)")
        with self._conn_lock:
            conn = self._pool.pop() if self._pool else None
            generation = self._generation
        if conn is None:
            conn = sqlite3.connect(self.index_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
        try:
            yield conn
        finally:
            with self._conn_lock:
                keep = generation == self._generation and len(self._pool) < _POOL_SIZE and not conn.in_transaction
                if keep:
                    self._pool.append(conn)
            if not keep:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the pooled connections (new ones open on the next use)."""
        with self._conn_lock:
            connections, self._pool = self._pool, []
            self._generation += 1
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _root(self) -> str:
        if self.root_real is None:
            raise BackendError("dicomlocal: the index is not open (the source is not initialized)")
        return self.root_real

    # -- scanning ------------------------------------------------------------------------

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
                        if not _inside(target, root):
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
            for chunk in _chunks(to_read, _CHUNK):
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
                f"WHERE i.study_uid = ? AND {_NOT_REJECTED} ORDER BY i.path",
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
                    (study_uid, uid, _number(a.get("SeriesNumber")), n, orjson.dumps(a))
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

    # -- reject --------------------------------------------------------------------------

    def reject_series(self, study_uid: str, series_uid: str) -> int:
        """Hide a series from searches and retrieves (its files stay); returns how many instances it had."""
        with self._write_lock, self._transaction() as tx:
            count = tx.execute(
                "SELECT COUNT(*) FROM instances WHERE study_uid = ? AND series_uid = ?", (study_uid, series_uid)
            ).fetchone()[0]
            if count:
                tx.execute("INSERT OR IGNORE INTO rejected VALUES (?, ?)", (study_uid, series_uid))
                self._recompute(tx, [study_uid])
        return int(count)

    def restore_series(self, study_uid: str, series_uid: str) -> bool:
        """Undo :meth:`reject_series`; ``True`` if the series was rejected."""
        with self._write_lock, self._transaction() as tx:
            changed = tx.execute(
                "DELETE FROM rejected WHERE study_uid = ? AND series_uid = ?", (study_uid, series_uid)
            ).rowcount
            if changed:
                self._recompute(tx, [study_uid])
        return bool(changed)

    def is_rejected(self, study_uid: str, series_uid: str) -> bool:
        return bool(
            self._rows("SELECT 1 FROM rejected WHERE study_uid = ? AND series_uid = ?", (study_uid, series_uid))
        )

    def rejected(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self._rows("SELECT study_uid, series_uid FROM rejected ORDER BY 1, 2")]

    # -- reading -------------------------------------------------------------------------

    def study_uids(self) -> list[str]:
        rows = self._rows("SELECT study_uid FROM studies ORDER BY study_date DESC, study_time DESC, study_uid")
        return [r[0] for r in rows]

    def study_records(self, study_uids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Study rows as QIDO returns them (``ModalitiesInStudy`` and the counts included)."""
        sql = "SELECT study_uid, n_series, n_instances, modalities, attrs FROM studies"
        order = " ORDER BY study_date DESC, study_time DESC, study_uid"
        if study_uids is None:
            rows = self._rows(sql + order)
        else:
            rows = []
            for chunk in _chunks(list(dict.fromkeys(study_uids)), 500):
                marks = ",".join("?" * len(chunk))
                rows += self._rows(f"{sql} WHERE study_uid IN ({marks})", list(chunk))
        out = []
        for uid, n_series, n_instances, modalities, blob in rows:
            record = orjson.loads(blob)
            record["StudyInstanceUID"] = uid
            record["ModalitiesInStudy"] = orjson.loads(modalities)
            record["NumberOfStudyRelatedSeries"] = n_series
            record["NumberOfStudyRelatedInstances"] = n_instances
            out.append(record)
        return out

    def series_records(self, study_uid: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT series_uid, n_instances, attrs FROM series WHERE study_uid = ? "
            "ORDER BY series_number IS NULL, series_number, series_uid",
            (study_uid,),
        )
        out = []
        for uid, n_instances, blob in rows:
            record = {"StudyInstanceUID": study_uid, **orjson.loads(blob)}
            record["SeriesInstanceUID"] = uid
            record["NumberOfSeriesRelatedInstances"] = n_instances
            out.append(record)
        return out

    def instance_rows(
        self, study_uid: str, series_uids: Sequence[str] | None = None
    ) -> list[tuple[str, str, str, str | None, dict[str, Any]]]:
        """``(sop, series, path, transfer syntax, attrs)`` of visible instances, in series then instance order."""
        sql = (
            "SELECT sop_uid, series_uid, path, transfer_syntax, attrs FROM instances i "
            f"WHERE study_uid = ? AND {_NOT_REJECTED}"
        )
        args: list[Any] = [study_uid]
        if series_uids:
            sql += f" AND series_uid IN ({','.join('?' * len(series_uids))})"
            args += list(series_uids)
        rows = [(r[0], r[1], r[2], r[3], orjson.loads(r[4])) for r in self._rows(sql, args)]
        rows.sort(
            key=lambda r: (_sort_number(r[4].get("SeriesNumber")), r[1], _sort_number(r[4].get("InstanceNumber")), r[2])
        )
        return rows

    def instance_records(self, study_uid: str, series_uid: str | None = None) -> list[dict[str, Any]]:
        out = []
        for sop, series, _path, ts, attrs in self.instance_rows(study_uid, [series_uid] if series_uid else None):
            record = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series, **attrs, "SOPInstanceUID": sop}
            if ts:
                record["AvailableTransferSyntaxUID"] = [ts]
            out.append(record)
        return out

    def path_of(self, sop_uid: str) -> tuple[str, str, str] | None:
        """``(study, series, relative path)`` of an instance, rejected ones included."""
        rows = self._rows("SELECT study_uid, series_uid, path FROM instances WHERE sop_uid = ?", (sop_uid,))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def indexed_path(self, rel: str) -> tuple[str, str, str] | None:
        """``(study, series, sop)`` of the instance indexed from ``rel``."""
        rows = self._rows("SELECT study_uid, series_uid, sop_uid FROM instances WHERE path = ?", (rel,))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def problems(self) -> list[Skipped]:
        return [Skipped(p, r) for p, r in self._rows("SELECT path, reason FROM skipped ORDER BY path")]


def _sort_number(value: Any) -> tuple[int, float]:
    number = _number(value)
    return (1, 0.0) if number is None else (0, number)
