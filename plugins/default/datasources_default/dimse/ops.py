"""The DIMSE messages the source sends — C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE — over the pool.

Each call maps pynetdicom's outcomes to typed errors: no answer within ``timeouts.dimse`` is
:class:`DimseTimeoutError` (pynetdicom aborts the association; the pool drops it), a failure
status is :class:`DimseStatusError`. A C-FIND is a generator that sends C-CANCEL when its
consumer stops early, and drains the peer's last answers so the association can be reused.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .config import DimseConfig
from .errors import DimseStatusError, DimseTimeoutError
from .pool import AssociationPool

__all__ = ["DimseClient", "STORAGE_SYNTAXES"]

#: Transfer syntaxes offered per SOP class when receiving (C-GET): one context each, so the
#: peer sends every instance as it stores it (compressed bytes unchanged) instead of transcoding.
STORAGE_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
)
_PENDING = frozenset({0xFF00, 0xFF01})
_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
_GET = "1.2.840.10008.5.1.4.1.2.2.3"
_VERIFICATION = "1.2.840.10008.1.1"
_MAX_CONTEXTS = 127


def _context(abstract: str, syntaxes: Sequence[str]) -> Any:
    from pynetdicom.presentation import build_context

    return build_context(abstract, list(syntaxes))


def _query_contexts() -> list[Any]:
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES

    return [_context(uid, DEFAULT_TRANSFER_SYNTAXES) for uid in (_VERIFICATION, _FIND, _MOVE)]


class DimseClient:
    """DIMSE operations against one PACS, through a bounded association pool."""

    def __init__(self, config: DimseConfig) -> None:
        self.config = config
        self.pool = AssociationPool(config)
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()

    @property
    def peer(self) -> str:
        return self.config.peer()

    def _msg_id(self) -> int:
        with self._id_lock:
            return next(self._ids) % 65535 + 1

    def _query(self) -> Any:
        return self.pool.association("query", _query_contexts)

    def _status(self, operation: str, status: Any) -> int:
        if status is None or "Status" not in status:
            raise DimseTimeoutError(self.peer, operation, self.config.timeouts.dimse)
        return int(status.Status)

    # -- C-ECHO ------------------------------------------------------------------------------

    def echo(self, *, fresh: bool = False) -> None:
        """C-ECHO; ``fresh`` on a new association (what a health check needs)."""
        with self.pool.association("query", _query_contexts, fresh=fresh) as assoc:
            code = self._status("C-ECHO", assoc.send_c_echo(msg_id=self._msg_id()))
        if code != 0:
            raise DimseStatusError(self.peer, "C-ECHO", code)

    # -- C-FIND ------------------------------------------------------------------------------

    def find(self, identifier: Any) -> Iterator[Any]:
        """The identifiers a Study Root C-FIND answers, one by one; closing the generator cancels."""
        with self._query() as assoc:
            msg_id = self._msg_id()
            responses = assoc.send_c_find(identifier, _FIND, msg_id=msg_id)
            finished = False
            try:
                for status, answer in responses:
                    code = self._status("C-FIND", status)
                    if code in _PENDING:
                        if answer is not None:
                            yield answer
                        continue
                    finished = True
                    if code not in (0x0000, 0xFE00):
                        raise DimseStatusError(self.peer, "C-FIND", code, str(status.get("ErrorComment", "")))
                    return
                finished = True
            finally:
                if not finished and assoc.is_established:
                    assoc.send_c_cancel(msg_id, query_model=_FIND)
                    for status, _ in responses:  # the rest, up to the Cancel status
                        if status is None or "Status" not in status or int(status.Status) not in _PENDING:
                            break

    # -- C-GET / C-MOVE ------------------------------------------------------------------------

    def get(self, identifier: Any, sop_classes: Sequence[str] | None, sink: Callable[[Any], int]) -> Any:
        """C-GET at the identifier's level; every instance goes to ``sink``. Returns the final status.

        With the series' SOP classes known, each class is offered once per transfer syntax, so
        the peer sends every instance as stored. Unknown (a peer whose C-FIND does not return
        SOPClassUID): pynetdicom's common storage classes, one context each.
        """
        from pynetdicom import StoragePresentationContexts
        from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

        if sop_classes:
            classes = sorted(set(sop_classes))
            per_class = max(1, min(len(STORAGE_SYNTAXES), (_MAX_CONTEXTS - 1) // len(classes)))
            syntax_groups = [[ts] for ts in STORAGE_SYNTAXES[:per_class]]
        else:
            classes = [c.abstract_syntax for c in StoragePresentationContexts][: _MAX_CONTEXTS - 1]
            syntax_groups = [list(STORAGE_SYNTAXES)]

        def contexts() -> list[Any]:
            out = [_context(_GET, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])]
            for uid in classes:
                out += [_context(uid, group) for group in syntax_groups]
            return out

        def roles() -> list[Any]:
            found = []
            for uid in classes:
                role = SCP_SCU_RoleSelectionNegotiation()
                role.sop_class_uid = uid
                role.scu_role = False
                role.scp_role = True
                found.append(role)
            return found

        kind = ("get", tuple(classes) if sop_classes else "common")
        with self.pool.association(kind, contexts, roles) as assoc:
            assoc.dimse_sink = sink
            final = None
            for status, _answer in assoc.send_c_get(identifier, _GET, msg_id=self._msg_id()):
                code = self._status("C-GET", status)
                if code not in _PENDING:
                    final = status
            return final

    def move(self, identifier: Any) -> Any:
        """C-MOVE to ``moveDestination`` (the source's own SCP must be running). Returns the final status."""
        with self._query() as assoc:
            final = None
            responses = assoc.send_c_move(identifier, self.config.move_destination, _MOVE, msg_id=self._msg_id())
            for status, _answer in responses:
                code = self._status("C-MOVE", status)
                if code not in _PENDING:
                    final = status
            return final

    # -- C-STORE -----------------------------------------------------------------------------

    def store(
        self, datasets: Sequence[Any], load: Callable[[int], Any] | None = None
    ) -> list[tuple[Any, int | None, str | None]]:
        """C-STORE each dataset; ``(dataset, status or None, reason)`` for each, in order.

        With ``load``, ``datasets`` may be headers only (SOP class, file meta): ``load(i)`` gives
        the whole of the i-th just before it is sent, so one instance at a time is in memory."""
        pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets})

        def contexts() -> list[Any]:
            return [_context(uid, [ts]) for uid, ts in pairs[:_MAX_CONTEXTS]]

        out: list[tuple[Any, int | None, str | None]] = []
        with self.pool.association(("store", tuple(pairs)), contexts) as assoc:
            accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
            for position, ds in enumerate(datasets):
                key = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                if key not in accepted:
                    out.append((ds, None, f"the peer accepts no presentation context for {key[0]} in {key[1]}"))
                    continue
                try:
                    whole = ds if load is None else load(position)
                except Exception as exc:  # the header read, the rest does not: this one fails, not the others
                    out.append((ds, None, f"not DICOM: {type(exc).__name__}: {exc}"))
                    continue
                status = assoc.send_c_store(whole, msg_id=self._msg_id())
                del whole
                if status is None or "Status" not in status:
                    raise DimseTimeoutError(self.peer, "C-STORE", self.config.timeouts.dimse)
                out.append((ds, int(status.Status), str(status.get("ErrorComment", "")) or None))
        return out

    def close(self) -> None:
        self.pool.close()
