"""Value types that sources hand back: what a store did per instance, and lazy series loads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from typing import Any, Generic, Literal, TypeVar

import attrs

from .errors import StoreError

__all__ = ["InstanceOutcome", "SeriesLoadTask", "SeriesMetadataJson", "StoreResult"]

T = TypeVar("T")

Status = Literal["stored", "warning", "failed"]


@attrs.frozen
class InstanceOutcome:
    """What the backend did with one instance sent to ``store.dicom``."""

    status: Status = attrs.field(validator=attrs.validators.in_(("stored", "warning", "failed")))
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    reason: str | None = None
    retrieve_url: str | None = None
    origin: str | None = None  # the file path or the position of the input, for reporting


@attrs.frozen
class StoreResult:
    """Per-instance outcomes of ``store.dicom``; nothing sent goes unreported."""

    outcomes: tuple[InstanceOutcome, ...] = attrs.field(converter=tuple)

    @property
    def stored(self) -> list[InstanceOutcome]:
        return [o for o in self.outcomes if o.status == "stored"]

    @property
    def warnings(self) -> list[InstanceOutcome]:
        return [o for o in self.outcomes if o.status == "warning"]

    @property
    def failed(self) -> list[InstanceOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def raise_for_failures(self) -> StoreResult:
        """Raise :class:`StoreError` naming the failed instances, if any; else return self."""
        if self.failed:
            names = ", ".join(o.sop_instance_uid or o.origin or "?" for o in self.failed[:5])
            more = f" and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
            raise StoreError(f"{len(self.failed)} of {len(self.outcomes)} instances were refused: {names}{more}")
        return self

    def __len__(self) -> int:
        return len(self.outcomes)


@attrs.frozen
class SeriesMetadataJson:
    """A study's WADO-RS metadata as the backend sent it, and the way from it into the store.

    ``retrieve.series.metadata_json`` hands one back. ``datasets`` is every instance's DICOM
    JSON, unchanged but for the study and series UIDs the backend left out, in the store's order
    (series, then instances); ``fill()`` naturalizes them into the host's metadata store as
    ``retrieve.series.metadata`` does and returns what that returns. The gateway answers from
    ``datasets`` and fills the store once the answer has left.
    """

    datasets: list[dict[str, Any]]
    fill: Callable[[], Any]


class SeriesLoadTask(Generic[T]):
    """One series' metadata load, not started until the caller says so.

    ``retrieve.series.metadata(..., return_tasks=True)`` hands back one per series with
    its QIDO summary in :attr:`metadata`, so the caller (a hanging protocol, say) starts
    the ones it needs first. :meth:`start` runs it on an executor and returns a Future;
    :meth:`run` runs it in the calling thread. Either way it runs once.
    """

    def __init__(self, metadata: Mapping[str, Any], load: Callable[[], T], executor: Executor | None = None) -> None:
        self.metadata = dict(metadata)
        self._load = load
        self._executor = executor
        self._future: Future[T] | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._future is not None

    def start(self, executor: Executor | None = None) -> Future[T]:
        """Start the load (once); later calls return the same Future."""
        with self._lock:
            if self._future is None:
                pool = executor or self._executor
                if pool is None:
                    fut: Future[T] = Future()
                    self._future = fut
                    self._run_into(fut)
                else:
                    self._future = pool.submit(self._load)
            return self._future

    def run(self) -> T:
        """Run now in this thread (or wait for the run already started) and return the result."""
        with self._lock:
            if self._future is None:
                fut: Future[T] = Future()
                self._future = fut
                self._run_into(fut)
        return self._future.result()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the result, starting the load if nobody did."""
        return self.start().result(timeout)

    def done(self) -> bool:
        return self._future is not None and self._future.done()

    def _run_into(self, fut: Future[T]) -> None:
        fut.set_running_or_notify_cancel()
        try:
            fut.set_result(self._load())
        except BaseException as exc:
            fut.set_exception(exc)

    def __repr__(self) -> str:
        state = "done" if self.done() else "running" if self.started else "not started"
        return f"<SeriesLoadTask {self.metadata.get('SeriesInstanceUID')!r} {state}>"
