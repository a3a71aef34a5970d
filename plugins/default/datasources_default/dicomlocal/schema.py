"""The SQLite file of a dicomlocal index: its schema, version check, connection pool, transactions.

Tables: ``instances`` (one row per file: the QIDO attributes of all three levels as JSON,
the file's path relative to the root, its mtime and size), ``series`` and ``studies``
(aggregates rebuilt for the studies a change touches), ``skipped`` (files that are not
indexed, and why), ``rejected`` (series hidden by ``reject.series``) and ``meta`` (the
schema version and the root; an index of another version or root is rebuilt). Connections
come from a small pool, each used by one thread at a time; one writer at a time per process
(SQLite's own locking between processes). WAL mode lets searches run while a pass writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from datasources.errors import BackendError, ConfigurationError

from .config import LocalConfig

__all__ = ["NOT_REJECTED", "SCHEMA_VERSION", "IndexDatabase"]

log = logging.getLogger("datasources.dicomlocal")

SCHEMA_VERSION = "1"
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
_TABLES = ("meta", "instances", "series", "studies", "skipped", "rejected")
NOT_REJECTED = "NOT EXISTS (SELECT 1 FROM rejected r WHERE r.study_uid = i.study_uid AND r.series_uid = i.series_uid)"


class IndexDatabase:
    """The index file of one root folder. ``open()`` does the first I/O; the constructor none."""

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
