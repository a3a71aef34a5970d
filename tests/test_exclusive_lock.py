"""tests/support/exclusive.py: an exclusive test waits for the tests under way, and none starts beside it.

Each RunLock opens its own files, so ``flock`` sets two of them in one process against each
other just as it sets the two xdist workers' (it locks open files, not processes).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from support.exclusive import RunLock


def test_exclusive_waits_for_shared_and_shared_waits_behind_a_waiting_exclusive(tmp_path: Path) -> None:
    ordinary, timed, late = (RunLock(tmp_path, "run-1") for _ in range(3))
    events: list[str] = []
    holding = threading.Event()

    def hold_shared(lock: RunLock, name: str, seconds: float) -> None:
        with lock.shared():
            events.append(f"{name} in")
            holding.set()
            time.sleep(seconds)
            events.append(f"{name} out")

    def hold_exclusive() -> None:
        with timed.exclusive():
            events.append("exclusive in")
            time.sleep(0.3)
            events.append("exclusive out")

    first = threading.Thread(target=hold_shared, args=(ordinary, "first", 0.5))
    first.start()
    assert holding.wait(5)
    writer = threading.Thread(target=hold_exclusive)
    writer.start()
    time.sleep(0.1)  # the exclusive one is waiting now
    second = threading.Thread(target=hold_shared, args=(late, "second", 0))
    second.start()
    for thread in (first, writer, second):
        thread.join(10)
        assert not thread.is_alive()
    assert events == ["first in", "first out", "exclusive in", "exclusive out", "second in", "second out"]
    for lock in (ordinary, timed, late):
        lock.close()
    assert list(tmp_path.iterdir()) == []


def test_shared_holders_run_side_by_side_and_runs_do_not_share_a_lock(tmp_path: Path) -> None:
    one, two, other_run = RunLock(tmp_path, "run-1"), RunLock(tmp_path, "run-1"), RunLock(tmp_path, "run/2")
    with one.shared(), two.shared(), other_run.exclusive():  # would hang if any of them conflicted
        assert {p.name for p in tmp_path.iterdir()} == {
            "run-run-1.turnstile",
            "run-run-1.lock",
            "run-run_2.turnstile",
            "run-run_2.lock",
        }
    for lock in (one, two, other_run):
        lock.close()


def test_a_worker_of_an_xdist_run_holds_the_lock_and_a_lone_process_does_not() -> None:
    import support.exclusive as plugin

    assert (plugin._LOCK is not None) == bool(os.environ.get("PYTEST_XDIST_WORKER"))
