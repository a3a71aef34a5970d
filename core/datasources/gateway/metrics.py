"""Prometheus metrics at ``/metrics`` (prometheus-client), per route and source, safe under several workers.

Per route (the path template, ``/{source}`` removed) and source: requests by status, a latency
histogram, bytes sent, metadata/QIDO cache hits and misses, backend errors. Under several
worker processes each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode, set by ``datasources serve --workers``) and
``/metrics`` adds them up, so a scrape answered by any worker covers all of them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import BackendError
from .observe import Record

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["MetricsSink", "metrics_endpoint"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_metrics: dict[str, Any] | None = None  # one set per process: prometheus-client names are process-global


def _registry() -> Any:
    from prometheus_client import REGISTRY, CollectorRegistry

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _instruments() -> dict[str, Any]:
    global _metrics
    if _metrics is None:
        try:
            from prometheus_client import Counter, Histogram
        except ImportError as exc:  # pragma: no cover - the extra is documented
            from ..errors import ConfigurationError

            message = "gateway metrics need prometheus-client: pip install 'datasources[gateway]'"
            raise ConfigurationError(message) from exc
        by = ("route", "source")
        _metrics = {
            "requests": Counter("datasources_gateway_requests", "Requests answered", (*by, "method", "status")),
            "latency": Histogram(
                "datasources_gateway_request_duration_seconds", "Time to answer", by, buckets=_BUCKETS
            ),
            "bytes": Counter("datasources_gateway_response_bytes", "Body bytes sent", by),
            "cache": Counter(
                "datasources_gateway_cache", "Metadata and QIDO answers by cache outcome", (*by, "layer", "result")
            ),
            "backend_errors": Counter(
                "datasources_gateway_backend_errors", "Requests failed by the source's backend", (*by, "type")
            ),
        }
    return _metrics


_MAX_CHILDREN = 4096


class MetricsSink:
    """The sink of :class:`~.observe.Observe` that counts into the Prometheus metrics."""

    def __init__(self) -> None:
        self.m = _instruments()
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: str, *labels: str) -> Any:
        """The labelled child of a metric, looked up once (prometheus_client checks and locks each time)."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= _MAX_CHILDREN:  # methods and routes come from clients: bounded
                self._children.clear()
            child = self._children[key] = self.m[metric].labels(*labels)
        return child

    def __call__(self, record: Record) -> None:
        if record.route == "/metrics":
            return  # scrapes are not traffic
        labels = (record.route, record.source or "")
        self._child("requests", *labels, record.method, str(record.status)).inc()
        self._child("latency", *labels).observe(record.duration)
        self._child("bytes", *labels).inc(record.bytes)
        if record.cache:
            hit = record.cache != "miss"
            self._child("cache", *labels, record.cache if hit else "", "hit" if hit else "miss").inc()
        if isinstance(record.error, BackendError):
            self._child("backend_errors", *labels, type(record.error).__name__).inc()


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text format, every worker's values added up."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    body = await run_in_threadpool(lambda: generate_latest(_registry()))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
