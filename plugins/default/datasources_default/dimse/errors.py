"""The typed errors of the ``dimse`` source, each a subclass of a :mod:`datasources.errors` type.

Every message names the peer as ``CALLING -> CALLED@host:port`` so a log line says which
association failed; no TLS material is ever part of one.
"""

from __future__ import annotations

from collections.abc import Sequence

from datasources.errors import BackendError, BackendTimeoutError, ConnectionFailedError

__all__ = [
    "AssociationRejectedError",
    "CacheError",
    "DimseStatusError",
    "DimseTimeoutError",
    "FailedSubOperation",
    "PeerUnreachableError",
    "SubOperationsFailedError",
]


class PeerUnreachableError(ConnectionFailedError):
    """Nobody answered at host:port (refused, unreachable, or the connect timeout passed)."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        super().__init__(f"dimse: no association with {peer}: {reason}")


class AssociationRejectedError(ConnectionFailedError):
    """The peer answered and rejected (or aborted) the association: wrong AE title, no contexts."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        super().__init__(f"dimse: association rejected by {peer}: {reason}")


class DimseTimeoutError(BackendTimeoutError):
    """A DIMSE request got no answer within ``timeouts.dimse`` (the association was aborted)."""

    def __init__(self, peer: str, operation: str, seconds: float | None) -> None:
        self.peer = peer
        self.operation = operation
        super().__init__(f"dimse: {operation} to {peer} got no answer within {seconds} s")


class DimseStatusError(BackendError):
    """The peer answered a request with a failure status."""

    def __init__(self, peer: str, operation: str, status: int, detail: str = "") -> None:
        self.peer = peer
        self.operation = operation
        self.status = status
        extra = f": {detail}" if detail else ""
        super().__init__(f"dimse: {operation} to {peer} failed with status 0x{status:04X}{extra}")


class FailedSubOperation:
    """One instance a C-GET/C-MOVE did not deliver (or delivered unreadable), with why."""

    __slots__ = ("reason", "sop_instance_uid", "status")

    def __init__(self, sop_instance_uid: str | None, status: int | None, reason: str) -> None:
        self.sop_instance_uid = sop_instance_uid
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        status = f"0x{self.status:04X}" if self.status is not None else "none"
        return f"FailedSubOperation({self.sop_instance_uid!r}, status={status}, {self.reason!r})"


class SubOperationsFailedError(BackendError):
    """A retrieve delivered only part of a series; ``stored`` arrived (and are cached), ``failed`` did not.

    The host's store is left unchanged for the series: a half-delivered series is never shown.
    """

    def __init__(self, peer: str, series_uid: str, stored: Sequence[str], failed: Sequence[FailedSubOperation]) -> None:
        self.peer = peer
        self.series_uid = series_uid
        self.stored = list(stored)
        self.failed = list(failed)
        super().__init__(
            f"dimse: retrieve of series {series_uid} from {peer}: {len(self.failed)} sub-operation(s) failed, "
            f"{len(self.stored)} instance(s) arrived (cached, not added to the store): {self.failed[:3]!r}"
        )


class CacheError(BackendError):
    """The cache folder cannot hold a retrieved instance (read-only, full, or above ``maxBytes``)."""
