"""pytest plugin: ``@pytest.mark.exclusive`` tests run while no other test of the run does.

The suite runs on two pytest-xdist workers. A test that times something (a deadline, a latency
under attack, a ratio of two timings) must not have the other worker's test competing for the
same two cores, or it becomes flaky; loosening its bound would hide what it checks. So each test
holds a lock of the run from its setup to its teardown: shared for ordinary tests, exclusive for
those marked ``exclusive``. A turnstile lock in front gives the exclusive one priority: once it
waits, no new test starts on the other worker, and the test under way there finishes first.

The locks are ``flock`` files named after the run (xdist's ``testrunuid``), in a folder of
ours alone under the temp dir; without xdist (one process) nothing is locked.

Loaded by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from .orthanc import _private_cache_dir

__all__ = ["RunLock"]

MARKER = "exclusive: times something; runs while no other test of the run does (tests/support/exclusive.py)"


class RunLock:
    """The run's reader-writer lock: :meth:`shared` for ordinary tests, :meth:`exclusive` for timed ones."""

    def __init__(self, folder: Path, run_id: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:64]
        self.paths = (folder / f"run-{safe}.turnstile", folder / f"run-{safe}.lock")
        self._turnstile: IO[bytes] = open(self.paths[0], "ab")  # noqa: SIM115 - held for the run
        self._main: IO[bytes] = open(self.paths[1], "ab")  # noqa: SIM115
        self.holds_exclusive = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)  # wait behind an exclusive test that is waiting
        try:
            fcntl.flock(self._main, fcntl.LOCK_SH)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self._main, fcntl.LOCK_UN)

    def acquire_exclusive(self) -> None:
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._main, fcntl.LOCK_EX)
        except BaseException:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)
            raise
        self.holds_exclusive = True

    def release_exclusive(self) -> None:
        self.holds_exclusive = False
        fcntl.flock(self._main, fcntl.LOCK_UN)
        fcntl.flock(self._turnstile, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        self.acquire_exclusive()
        try:
            yield
        finally:
            self.release_exclusive()

    def close(self) -> None:
        """Close, and remove the files (a worker still running keeps its open ones: it is done locking
        against this one)."""
        self._turnstile.close()
        self._main.close()
        for path in self.paths:
            path.unlink(missing_ok=True)


_LOCK: RunLock | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _LOCK
    config.addinivalue_line("markers", MARKER)
    # this process is an xdist worker (a pytest that a test starts inherits PYTEST_XDIST_* variables
    # but is none: it must not wait on the lock its parent test holds)
    worker_input = getattr(config, "workerinput", None)
    run_id = worker_input.get("testrunuid") if worker_input else None
    if run_id:
        folder = _private_cache_dir()
        if folder is None:
            raise pytest.UsageError("tests/support/exclusive.py: no private temp folder for the run's lock")
        _LOCK = RunLock(folder, run_id)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _LOCK
    if _LOCK is not None:
        _LOCK.close()
        _LOCK = None


def _exclusive(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("exclusive") is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Shared for one test at a time (so a waiting exclusive test gets in between two of them);
    exclusive held on through consecutive exclusive tests (one wait for the other worker, not one
    each)."""
    if _LOCK is None:
        yield
        return
    if not _exclusive(item):
        with _LOCK.shared():
            yield
        return
    if not _LOCK.holds_exclusive:
        _LOCK.acquire_exclusive()
    try:
        yield
    finally:
        if not _exclusive(nextitem):
            _LOCK.release_exclusive()
