"""A bounded pool of pynetdicom associations with one PACS: concurrent callers wait, never open more.

``maxAssociations`` is a semaphore over every association the source holds (queries, retrieves,
stores). Idle associations are kept per *kind* (the presentation contexts they were opened
with) and reused while still established; one that the peer or the network timeout closed is
dropped on the way out. A failed operation aborts its association, so a stuck one is never
handed to the next caller.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

from .config import DimseConfig
from .errors import AssociationRejectedError, PeerUnreachableError

__all__ = ["AssociationPool", "Sink"]

#: A C-STORE receiver: (the event) -> DIMSE status. Set per operation on a pooled association.
Sink = Callable[[Any], int]

_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


class AssociationPool:
    """Associations with one peer; use :meth:`association` as a context manager."""

    def __init__(self, config: DimseConfig) -> None:
        self.config = config
        self._slots = threading.BoundedSemaphore(config.max_associations)
        self._lock = threading.Lock()
        self._idle: dict[Hashable, list[Any]] = {}
        self._open = 0
        self.peak = 0  # most associations open at once (tests check maxAssociations with it)
        self.opened = 0
        _close_at_exit(self)

    # -- the AE ----------------------------------------------------------------------------

    def _ae(self, contexts: Sequence[Any]) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.config.calling_ae)
        t = self.config.timeouts
        ae.connection_timeout = t.connect
        ae.acse_timeout = t.acse
        ae.dimse_timeout = t.dimse
        ae.network_timeout = t.network
        ae.maximum_pdu_size = 0  # no limit: fewer PDUs for large instances
        for context in contexts:
            ae.add_requested_context(context.abstract_syntax, context.transfer_syntax)
        return ae

    def _connect(self, contexts: Sequence[Any], roles: Sequence[Any]) -> Any:
        from pynetdicom import evt

        ae = self._ae(contexts)
        tls = self.config.ssl_context()
        rejects: list[Any] = []  # the A-ASSOCIATE-RJ PDU, as the DUL decoded it

        def note_reject(event: Any) -> None:
            if type(event.pdu).__name__ == "A_ASSOCIATE_RJ":
                rejects.append(event.pdu)

        handlers = [(evt.EVT_C_STORE, _dispatch_store), (evt.EVT_PDU_RECV, note_reject)]
        assoc = ae.associate(
            self.config.host,
            self.config.port,
            ae_title=self.config.called_ae,
            ext_neg=list(roles) or None,
            tls_args=(tls, self.config.host) if tls is not None else None,
            evt_handlers=handlers,
            max_pdu=0,
        )
        if assoc.is_established:
            assoc.unbind(evt.EVT_PDU_RECV, note_reject)  # not called for every P-DATA from now on
            assoc.dimse_sink = None
            _no_delay(assoc)
            return assoc
        peer = self.config.peer()
        if rejects or assoc.is_rejected:
            # a peer on loopback can reject and close before pynetdicom's requestor thread has
            # looked at the socket: it then reports an abort, though the RJ PDU was received
            if rejects:
                key = (rejects[0].source, rejects[0].reason_diagnostic)
            else:
                primitive = getattr(assoc.acceptor, "primitive", None)
                key = (getattr(primitive, "result_source", None), getattr(primitive, "diagnostic", None))
            raise AssociationRejectedError(peer, _REJECT_REASONS.get(key, f"source/diagnostic {key}"))
        if not _tcp_reachable(self.config.host, self.config.port, self.config.timeouts.connect):
            raise PeerUnreachableError(peer, "nothing answers on that port (refused or timed out)")
        raise AssociationRejectedError(peer, "the peer aborted the association request (no acceptable contexts?)")

    # -- the pool ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def association(
        self,
        kind: Hashable,
        contexts: Callable[[], Sequence[Any]],
        roles: Callable[[], Sequence[Any]] = tuple,
        *,
        fresh: bool = False,
    ) -> Iterator[Any]:
        """An established association of ``kind`` (reused or new), for the duration of the block.

        ``fresh``: always a new association, released afterwards (a health probe must not
        trust an association opened before the peer went away).
        """
        self._slots.acquire()
        assoc = None
        try:
            with self._lock:
                idle = [] if fresh else self._idle.get(kind, [])
                while idle and assoc is None:
                    candidate = idle.pop()
                    if candidate.is_established:
                        assoc = candidate
                    else:
                        self._open -= 1
                victim = self._evict_other_idle(kind) if assoc is None else None
            if victim is not None:
                with contextlib.suppress(Exception):
                    victim.release()
            if assoc is None:
                assoc = self._connect(contexts(), roles())
                with self._lock:
                    self._open += 1
                    self.opened += 1
                    self.peak = max(self.peak, self._open)
            ok = False
            try:
                yield assoc
                ok = True
            except GeneratorExit:  # a C-FIND generator closed early: cancelled cleanly, reusable
                ok = True
                raise
            finally:
                assoc.dimse_sink = None
                if ok and assoc.is_established and not fresh:
                    with self._lock:
                        self._idle.setdefault(kind, []).append(assoc)
                elif ok and assoc.is_established:
                    with contextlib.suppress(Exception):
                        assoc.release()
                    with self._lock:
                        self._open -= 1
                else:
                    with contextlib.suppress(Exception):
                        assoc.abort()
                    with self._lock:
                        self._open -= 1
        finally:
            self._slots.release()

    def _evict_other_idle(self, kind: Hashable) -> Any:
        """An idle association of another kind to close first, so the open count stays within the bound."""
        if self._open < self.config.max_associations:
            return None
        for other, idle in self._idle.items():
            if other != kind and idle:
                self._open -= 1
                return idle.pop()
        return None

    def close(self) -> None:
        """Release every idle association (busy ones close when their caller is done)."""
        with self._lock:
            idle = [a for group in self._idle.values() for a in group]
            self._idle.clear()
            self._open -= len(idle)
        for assoc in idle:
            with contextlib.suppress(Exception):
                assoc.release()


def _close_at_exit(pool: AssociationPool) -> None:
    """Release idle associations when the interpreter exits.

    pynetdicom's DUL threads are not daemons: an idle pooled association would keep a CLI
    process alive until ``timeouts.network`` closes it. ``threading._register_atexit`` runs
    before non-daemon threads are joined (plain ``atexit`` runs after, too late); it is what
    ``concurrent.futures`` uses.
    """
    ref = weakref.ref(pool)

    def close() -> None:
        live = ref()
        if live is not None:
            live.close()

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(close)
            return
    except RuntimeError:  # already shutting down
        return
    atexit.register(close)


def _dispatch_store(event: Any) -> int:
    sink = getattr(event.assoc, "dimse_sink", None)
    if sink is None:
        return 0xA700  # Out of resources: nobody asked for this instance
    return sink(event)


def _no_delay(assoc: Any) -> None:
    """TCP_NODELAY: a DIMSE request is a few small PDUs; Nagle + delayed ACK would add ~40 ms to each."""
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _tcp_reachable(host: str, port: int, timeout: float | None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout or 10):
            return True
    except OSError:
        return False
