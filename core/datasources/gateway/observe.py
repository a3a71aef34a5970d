"""What happened to each request (route, source, status, bytes, time, cache, error), for the access log and metrics.

:class:`Observe` is the outermost middleware: it sees the status and the bytes that leave,
401s and 503s included. Handlers and the gateway's state add to the request's
:class:`Record` through :func:`note` (a context variable: Starlette's thread pool copies the
context, so a note made in a worker thread lands in the same record). When the answer is
sent, the record goes to each sink (the access log, the metrics).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Observe", "Record", "note", "route_of"]


@dataclass
class Record:
    """One request, as the access log and the metrics see it."""

    method: str
    path: str
    query: str
    started: float
    status: int = 0
    bytes: int = 0
    duration: float = 0.0
    route: str = "unmatched"
    source: str | None = None
    cache: str | None = None  # "memory", "redis" or "miss", for answers that can come from a cache
    error: BaseException | None = None  # a typed error a handler raised (answered by the error handlers)


_current: contextvars.ContextVar[Record | None] = contextvars.ContextVar("datasources_gateway_record", default=None)


def note(**fields: Any) -> None:
    """Add to the current request's record (no-op outside a request)."""
    record = _current.get()
    if record is not None:
        for key, value in fields.items():
            setattr(record, key, value)


def route_of(scope: Scope) -> tuple[str, str | None]:
    """The matched route's template without the ``/{source}`` prefix, and the source it names."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not template:
        return "unmatched", None
    params = scope.get("path_params") or {}
    if template.startswith("/{source}/"):
        return template[len("/{source}") :], params.get("source")
    return template, None


Sink = Callable[[Record], None]


class Observe:
    """ASGI middleware: one :class:`Record` per HTTP request, handed to every sink when it ends."""

    def __init__(self, app: ASGIApp, sinks: Sequence[Sink], default_source: str | None) -> None:
        self.app = app
        self.sinks = tuple(sinks)
        self.default_source = default_source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        record = Record(scope["method"], scope["path"], query, time.perf_counter())
        token = _current.set(record)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body":
                record.bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            record.status = record.status or 500
            raise
        finally:
            _current.reset(token)
            record.duration = time.perf_counter() - record.started
            record.route, named = route_of(scope)
            if record.source is None:
                record.source = named or (self.default_source if record.route.startswith("/dicom-web") else None)
            for sink in self.sinks:
                sink(record)
