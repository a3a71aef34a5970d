"""Graceful shutdown: requests in flight finish (bounded by the server), new ones get 503, sources are closed.

On SIGTERM or SIGINT (the server's own handler still runs after ours) the gateway starts
draining: a request that arrives from then on, on a connection kept alive, is answered 503
with ``Connection: close`` and ``Retry-After``, and ``/readyz`` says ``draining``. The server
stops accepting and waits for the requests in flight (uvicorn's ``timeout_graceful_shutdown``,
gunicorn's ``--graceful-timeout``); then the lifespan's end closes every served source (their
connection pools) and the shared cache.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..errors import DataSourcesError, safe_message
from .http_errors import error_response

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Receive, Scope, Send

    from .health import Health

__all__ = ["Drain", "lifespan"]

log = logging.getLogger("datasources.gateway")


class Drain:
    """ASGI middleware: 503 for requests that arrive while the gateway shuts down."""

    def __init__(self, app: ASGIApp, health: Health) -> None:
        self.app = app
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.health.draining:
            response = error_response(
                503, "the gateway is shutting down", "ShuttingDown", {"Connection": "close", "Retry-After": "1"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _hook_signals(health: Health) -> None:
    """Mark the gateway draining on SIGTERM/SIGINT, then run the server's own handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Callable[[int, Any], Any] = previous) -> None:
            health.draining = True
            previous(signum, frame)

        signal.signal(sig, handler)


def close_sources(health: Health) -> None:
    """Close every served source that can be closed (connection pools, indexes), then the cache."""
    gateway = health.gateway
    for name in gateway.sources:
        try:
            data_source = gateway.host.get_data_source(name)
            if "close" in data_source.helpers:
                data_source.helpers.close()
        except DataSourcesError as exc:
            log.warning("gateway: closing source %s: %s", name, safe_message(exc))
    if health.cache is not None:
        health.cache.close()
    log.info("gateway: sources closed (%s)", ", ".join(gateway.sources))


def lifespan(health: Health) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """Starlette's ``lifespan``: hook the signals at start; at the end, drain and close."""

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        _hook_signals(health)
        try:
            yield
        finally:
            health.draining = True
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(close_sources, health)

    return run
