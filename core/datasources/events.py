"""Publish/subscribe, as OHIF's pubSubServiceInterface, for the host and the metadata store.

Callbacks run in the publishing thread after the publisher has released its locks, so a
subscriber may call back into the store. A callback that raises is logged and skipped: one
bad subscriber never breaks a writer or the other subscribers.
"""

from __future__ import annotations

import _thread  # threading's own locks, without importing threading at a host's start
import itertools
from collections.abc import Callable, Mapping
from types import MappingProxyType, SimpleNamespace
from typing import Any

from .errors import UnknownEventError

__all__ = ["PubSub", "Subscription"]


def _log() -> Any:
    """The module's logger, made on first use: importing logging costs a start-up budget's tenth."""
    import logging

    return logging.getLogger("datasources.events")


Callback = Callable[[Any], Any]


class Subscription:
    """What ``subscribe`` returns; ``unsubscribe()`` is idempotent."""

    __slots__ = ("_id", "_owner", "event")

    def __init__(self, owner: PubSub, event: str, sub_id: int) -> None:
        self._owner = owner
        self.event = event
        self._id = sub_id

    def unsubscribe(self) -> None:
        self._owner._unsubscribe(self.event, self._id)

    def __repr__(self) -> str:
        return f"Subscription(event={self.event!r})"


class PubSub:
    """Mix-in giving ``subscribe``/``_broadcast_event`` over the names in ``EVENTS``."""

    EVENTS: Any = SimpleNamespace()

    @staticmethod
    def make_events(**events: str) -> SimpleNamespace:
        """``EVENTS`` as attribute access: ``store.EVENTS.INSTANCES_ADDED``."""
        return SimpleNamespace(**events)

    def __init__(self) -> None:
        self._listeners: dict[str, dict[int, Callback]] = {}
        self._listeners_lock = _thread.allocate_lock()
        self._ids = itertools.count(1)

    @property
    def event_names(self) -> Mapping[str, str]:
        return MappingProxyType(dict(vars(self.EVENTS)))

    def _check_event(self, event: str) -> None:
        known = vars(self.EVENTS).values()
        if event not in known:
            raise UnknownEventError(event, known)

    def subscribe(self, event: str, callback: Callback) -> Subscription:
        """Call ``callback(payload)`` on each ``event``; unknown event names raise."""
        self._check_event(event)
        if not callable(callback):
            raise TypeError(f"callback for {event!r} is not callable: {callback!r}")
        sub_id = next(self._ids)
        with self._listeners_lock:
            # copy-on-write: a broadcast in progress keeps iterating its own snapshot
            current = dict(self._listeners.get(event, {}))
            current[sub_id] = callback
            self._listeners[event] = current
        return Subscription(self, event, sub_id)

    def _unsubscribe(self, event: str, sub_id: int) -> None:
        with self._listeners_lock:
            current = self._listeners.get(event)
            if current and sub_id in current:
                current = dict(current)
                del current[sub_id]
                self._listeners[event] = current

    def _broadcast_event(self, event: str, payload: Any) -> None:
        listeners = self._listeners.get(event)
        if not listeners:
            return
        for callback in listeners.values():
            try:
                callback(payload)
            except Exception:
                _log().exception("subscriber %r of %s raised; continuing", callback, event)
