"""Retrieving a series into the cache, by C-GET or by C-MOVE to the source's own storage SCP.

The instance-level C-FIND first says which instances the series holds (and their SOP classes,
for the C-GET's presentation contexts). Each instance that arrives is written to the cache as
received (Part-10, the peer's transfer syntax, no decoding). Then every expected instance must
have arrived: any that did not, or that the peer reported failed, make the whole series a
:class:`SubOperationsFailedError` — the instances that arrived stay cached, but nothing reaches
the host's store and no manifest is written, so no half series is ever shown.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from .cache import InstanceCache
from .errors import CacheError, DimseStatusError, FailedSubOperation, SubOperationsFailedError
from .ops import DimseClient

__all__ = ["Delivery", "StorageSCP", "retrieve_series"]

_OUT_OF_RESOURCES = 0xA700


class Delivery:
    """What arrived for one retrieve: written paths per SOP UID, and the first cache error."""

    def __init__(self, cache: InstanceCache, expected: set[str]) -> None:
        self.cache = cache
        self.expected = expected
        self.paths: dict[str, str] = {}
        self.errors: list[FailedSubOperation] = []
        self.cache_error: CacheError | None = None
        self.bytes = 0
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> int:
        sop = str(event.request.AffectedSOPInstanceUID)
        if self.cache_error is not None:
            return _OUT_OF_RESOURCES
        try:
            data = bytes(event.encoded_dataset())
            path = self.cache.put_instance(sop, data)
        except CacheError as exc:
            self.cache_error = exc
            return _OUT_OF_RESOURCES
        except Exception as exc:  # an undecodable message: reported, not raised into pynetdicom
            with self._lock:
                self.errors.append(FailedSubOperation(sop, None, f"cannot be written: {type(exc).__name__}: {exc}"))
            return 0xC000
        with self._lock:
            self.paths[sop] = str(path)
            self.bytes += len(data)
        return 0x0000


class StorageSCP:
    """The source's own C-STORE SCP for C-MOVE: runs while at least one move is under way."""

    def __init__(self, client: DimseClient, bind: str) -> None:
        self.client = client
        self.bind = bind
        self._lock = threading.Lock()
        # held while the server starts or stops: a move that begins while the last one's server is
        # closing waits for it to close, instead of binding the port it still listens on
        self._lifecycle = threading.Lock()
        self._users = 0
        self._server: Any = None
        self._routes: dict[str, Delivery] = {}

    def _handle(self, event: Any) -> int:
        sop = str(event.request.AffectedSOPInstanceUID)
        with self._lock:
            delivery = self._routes.get(sop)
        return delivery(event) if delivery is not None else _OUT_OF_RESOURCES

    @contextlib.contextmanager
    def receiving(self, delivery: Delivery) -> Any:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        with self._lifecycle, self._lock:
            for sop in delivery.expected:
                self._routes[sop] = delivery
            if self._server is None:
                config = self.client.config
                ae = AE(ae_title=config.move_destination or config.calling_ae)
                ae.network_timeout = config.timeouts.network
                ae.acse_timeout = config.timeouts.acse
                ae.dimse_timeout = config.timeouts.dimse
                ae.maximum_pdu_size = 0
                for context in AllStoragePresentationContexts:
                    ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
                handlers = [(evt.EVT_C_STORE, self._handle)]
                try:
                    self._server = ae.start_server(
                        (self.bind, config.storage_port or 0), block=False, evt_handlers=handlers
                    )
                except OSError as exc:
                    raise DimseStatusError(
                        config.peer(),
                        "C-MOVE",
                        0xA801,
                        f"the storage SCP cannot listen on port {config.storage_port}: {exc}",
                    ) from None
            self._users += 1
        try:
            yield
        finally:
            with self._lifecycle:
                with self._lock:
                    for sop in delivery.expected:
                        self._routes.pop(sop, None)
                    self._users -= 1
                    server = self._server if self._users == 0 else None
                    if server is not None:
                        self._server = None
                if server is not None:
                    server.shutdown()  # not under _lock: the store handlers still running take it


def _final_failures(final: Any, operation: str) -> tuple[list[FailedSubOperation], int | None]:
    """The failed sub-operations a final C-GET/C-MOVE status lists (PS3.4 C.4.2.1.4), and its code."""
    if final is None or "Status" not in final:
        return [], None
    code = int(final.Status)
    listed = final.get("FailedSOPInstanceUIDList")
    if listed is None or listed == "":
        uids: list[Any] = []
    elif isinstance(listed, str):
        uids = [listed]
    else:
        uids = list(listed)
    comment = str(final.get("ErrorComment", "") or "")
    reason = f"{operation} reported it failed" + (f": {comment}" if comment else "")
    return [FailedSubOperation(str(u), code, reason) for u in uids if u], code


def retrieve_series(
    client: DimseClient,
    cache: InstanceCache,
    scp: StorageSCP | None,
    study_uid: str,
    series_uid: str,
    naturalize: Callable[[str, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Retrieve one series whole into the cache and return its naturalized instances (by InstanceNumber)."""
    from pydicom import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series_uid
    query.SOPInstanceUID = ""
    query.SOPClassUID = ""
    expected: dict[str, str] = {}
    for answer in client.find(query):
        sop = str(answer.get("SOPInstanceUID", "") or "")
        if sop:
            expected[sop] = str(answer.get("SOPClassUID", "") or "")
    if not expected:
        return []
    delivery = Delivery(cache, set(expected))
    move = Dataset()
    move.QueryRetrieveLevel = "SERIES"
    move.StudyInstanceUID = study_uid
    move.SeriesInstanceUID = series_uid
    if client.config.retrieve == "cmove":
        assert scp is not None
        with scp.receiving(delivery):
            final = client.move(move)
        operation = "C-MOVE"
    else:
        classes = list(expected.values())
        final = client.get(move, classes if all(classes) else None, delivery)
        operation = "C-GET"
    if delivery.cache_error is not None:
        raise delivery.cache_error
    listed, code = _final_failures(final, operation)
    failed = listed + delivery.errors
    known = {f.sop_instance_uid for f in failed}
    status = code if code not in (None, 0x0000) else None
    failed += [
        FailedSubOperation(sop, status, f"{operation} never delivered it")
        for sop in expected
        if sop not in delivery.paths and sop not in known
    ]
    if failed:
        raise SubOperationsFailedError(client.peer, series_uid, sorted(delivery.paths), failed)
    instances = [naturalize(sop, delivery.paths[sop]) for sop in expected]
    instances.sort(key=_instance_order)
    cache.commit_series(study_uid, series_uid, instances, delivery.bytes)
    return instances


def _instance_order(instance: dict[str, Any]) -> tuple[int, str]:
    number = instance.get("InstanceNumber")
    try:
        return int(number if not isinstance(number, list) else number[0]), str(instance.get("SOPInstanceUID"))
    except (TypeError, ValueError):
        return 2**31, str(instance.get("SOPInstanceUID"))
