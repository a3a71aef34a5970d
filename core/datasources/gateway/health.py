"""``/healthz`` (the process answers) and ``/readyz`` (each source's state, a cheap probe, with timings).

``/readyz`` answers 200 when every served source answers its probe, 503 otherwise (and while
the gateway shuts down), so a load balancer stops sending to a gateway whose archive is
gone. A source's probe is a study search with ``limit=1`` (one QIDO request for a DICOMweb
source, a look-up for a file source), run in a worker thread and bounded by ``probe_timeout``;
its result is kept for ``probe_interval`` seconds, so frequent checks do not load the archive.
Each source also shows whether it is initialized and the last error a request met, named as
clients are told it (a backend's URLs and answers stay in the gateway's log).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import DataSourcesError
from .http_errors import client_message
from .observe import Record

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .redis_cache import RedisCache
    from .state import Gateway

__all__ = ["Health", "healthz", "readyz"]


class Health:
    """What ``/readyz`` reports; also the sink of :class:`~.observe.Observe` that keeps each source's last error."""

    def __init__(
        self,
        gateway: Gateway,
        cache: RedisCache | None = None,
        *,
        probe_timeout: float = 5.0,
        probe_interval: float = 2.0,
    ) -> None:
        self.gateway = gateway
        self.cache = cache
        self.probe_timeout = probe_timeout
        self.probe_interval = probe_interval
        self.draining = False
        self.last_errors: dict[str, dict[str, Any]] = {}
        self._probes: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __call__(self, record: Record) -> None:
        if record.error is not None and record.source and record.status >= 500:
            with self._lock:
                self.last_errors[record.source] = {
                    "type": type(record.error).__name__,
                    "message": client_message(record.error),
                    "status": record.status,
                    "route": record.route,
                    "at": time.time(),
                }

    def _probe(self, name: str) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            self.gateway.host.get_data_source(name).query.studies.search({"limit": 1})
            return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 2)}
        except DataSourcesError as exc:
            return {
                "ok": False,
                "ms": round((time.perf_counter() - start) * 1000, 2),
                "error": f"{type(exc).__name__}: {client_message(exc)}",
            }

    async def probe(self, name: str) -> dict[str, Any]:
        now = time.monotonic()
        kept = self._probes.get(name)
        if kept is not None and now - kept[0] < self.probe_interval:
            return kept[1]
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(loop.run_in_executor(None, self._probe, name), self.probe_timeout)
        except asyncio.TimeoutError:
            result = {"ok": False, "ms": self.probe_timeout * 1000, "error": "no answer in time"}
        self._probes[name] = (time.monotonic(), result)
        return result

    async def report(self) -> tuple[bool, dict[str, Any]]:
        probes = await asyncio.gather(*(self.probe(name) for name in self.gateway.sources))
        infos = {info.source_name: info for info in self.gateway.host.data_sources}
        sources = []
        for name, probe in zip(self.gateway.sources, probes, strict=True):
            info = infos.get(name)
            sources.append({
                "name": name,
                "initialized": bool(info and info.initialized),
                "last_error": self.last_errors.get(name),
                "probe": probe,
            })  # fmt: skip
        ready = not self.draining and all(s["probe"]["ok"] for s in sources)
        body: dict[str, Any] = {"status": "ready" if ready else "draining" if self.draining else "unready"}
        body["pid"] = os.getpid()
        body["sources"] = sources
        if self.cache is not None:
            up, took = await loop_ping(self.cache)
            body["cache"] = {"url": self.cache.url, "up": up, "ms": round(took * 1000, 2)}
        return ready, body


async def loop_ping(cache: RedisCache) -> tuple[bool, float]:
    """The cache's ping, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, cache.ping)


def _health_of(request: Request) -> Health:
    return request.app.state.health  # type: ignore[no-any-return]


async def healthz(request: Request) -> Response:
    """200 while the process answers (503 once it shuts down)."""
    from starlette.responses import JSONResponse

    health = _health_of(request)
    status = "draining" if health.draining else "ok"
    return JSONResponse({"status": status, "pid": os.getpid()}, status_code=503 if health.draining else 200)


async def readyz(request: Request) -> Response:
    """200 when every source answers its probe, 503 otherwise; the body says which and how fast."""
    from starlette.responses import JSONResponse

    ready, body = await _health_of(request).report()
    return JSONResponse(body, status_code=200 if ready else 503)
