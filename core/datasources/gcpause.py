"""Pausing the cyclic garbage collector around bulk parsing, without the collection after it;
and freeing what a bulk load built off the caller's time.

Parsing a large DICOM JSON answer builds millions of acyclic, long-lived objects; the collector
walking them while they are made, and once more when it comes back, dominates such loads. Freeing
them costs about as much as building them, so whoever drops a big structure on a request's path
(the gateway replacing a study's metadata) can hand it to :func:`release_later`.
"""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["paused_gc", "release_later"]

_released: queue.SimpleQueue[Any] = queue.SimpleQueue()
_releaser: threading.Thread | None = None
_releaser_lock = threading.Lock()


def _release_forever() -> None:
    while True:
        item = _released.get()
        del item  # the last reference: everything under it is freed here, in this thread


def release_later(item: Any) -> None:
    """Drop ``item`` in a background thread: the caller must hold no other reference to it.

    Freeing a 1000-instance study takes tens of milliseconds with the GIL held; done here, it
    overlaps with the caller's waiting on a backend instead of adding to the request's time.
    """
    global _releaser
    if _releaser is None:
        with _releaser_lock:
            if _releaser is None:
                _releaser = threading.Thread(target=_release_forever, name="datasources-release", daemon=True)
                _releaser.start()
    _released.put(item)


_pause_lock = threading.Lock()
_pauses = 0  # threads inside paused_gc(); the collector is off while any is
_resume_enabled = False  # whether the first pause found the collector on


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector around bulk parsing (it dominates big JSON loads).

    Re-enabling the collector is not enough: everything allocated during the pause sits in the
    youngest generation, so the next allocation would start a collection over all of it (11-31%
    of a metadata load). What a parse builds is acyclic and long-lived, so on leaving, those
    objects are moved straight to the oldest generation (``gc.freeze`` + ``gc.unfreeze``, no
    traversal); a full collection still visits them later. Pauses nest and may overlap across
    threads: the collector comes back when the last one ends. When the application froze
    objects itself (``gc.get_freeze_count()``), they are left frozen and this step is skipped.
    """
    global _pauses, _resume_enabled
    with _pause_lock:
        if _pauses == 0:
            _resume_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume_enabled:
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()  # the young objects land in the oldest generation, untraversed
                gc.enable()
