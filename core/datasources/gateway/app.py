"""The gateway application: a :class:`~datasources.Host` served as standard DICOMweb.

``create_app(host)`` returns a Starlette (ASGI) application. Every served source answers
under ``/{sourceName}/dicom-web/...``, the default one also under ``/dicom-web/...``; the
study browser is at ``/``. Source calls block (files, HTTP), so they run in the worker
thread pool, never on the event loop.

This module only assembles: the route table below names every endpoint, and the handlers
live in their own modules (:mod:`.qido`, :mod:`.wado_metadata`, :mod:`.wado_frames`,
:mod:`.stow`, :mod:`.browser`, :mod:`.health`, :mod:`.metrics`), which reach the
:class:`~.state.Gateway` through the request and never import this module. The production
parts are registered here too: :mod:`.observe` (with its sinks :mod:`.access_log`,
:mod:`.metrics` and :mod:`.health`), :mod:`.lifecycle` (graceful shutdown),
:mod:`.redis_cache` (the shared cache) and :mod:`.factory` (settings from the environment).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .http_errors import exception_handlers, status_for
from .middleware import middleware_stack
from .observe import note
from .state import Gateway

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ..host import Host

    Handler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]

__all__ = ["Gateway", "create_app", "status_for"]

Endpoint = Callable[["Request"], Awaitable["Response"]]


def _by_method(get: Endpoint, post: Endpoint) -> Endpoint:
    """One endpoint for a path that reads on GET and stores on POST (so a 405 names both)."""

    async def endpoint(request: Request) -> Response:
        return await (post if request.method == "POST" else get)(request)

    return endpoint


def dicomweb_table() -> list[tuple[str, Endpoint, list[str]]]:
    """The DICOMweb routes, relative to a ``/dicom-web`` root: (path, endpoint, methods)."""
    from . import qido, stow, wado_frames, wado_metadata

    study = "/studies/{study}"
    series = f"{study}/series/{{series}}"
    instance = f"{series}/instances/{{sop}}"
    return [
        ("/studies", _by_method(qido.search_studies, stow.store_instances), ["GET", "POST"]),
        (study, _by_method(wado_metadata.retrieve_study, stow.store_study_instances), ["GET", "POST"]),
        ("/series", qido.search_all_series, ["GET"]),
        ("/instances", qido.search_all_instances, ["GET"]),
        (f"{study}/series", qido.search_study_series, ["GET"]),
        (f"{study}/instances", qido.search_study_instances, ["GET"]),
        (f"{study}/metadata", wado_metadata.study_metadata, ["GET"]),
        (f"{study}/thumbnail", wado_frames.study_thumbnail, ["GET"]),
        (series, wado_metadata.retrieve_series, ["GET"]),
        (f"{series}/instances", qido.search_series_instances, ["GET"]),
        (f"{series}/metadata", wado_metadata.series_metadata, ["GET"]),
        (f"{series}/thumbnail", wado_frames.series_thumbnail, ["GET"]),
        (instance, wado_metadata.retrieve_instance, ["GET"]),
        (f"{instance}/metadata", wado_metadata.instance_metadata, ["GET"]),
        (f"{instance}/rendered", wado_frames.rendered, ["GET"]),
        (f"{instance}/thumbnail", wado_frames.instance_thumbnail, ["GET"]),
        (f"{instance}/frames/{{frames}}", wado_frames.frames, ["GET"]),
        (f"{instance}/frames/{{frames}}/rendered", wado_frames.rendered, ["GET"]),
        (f"{instance}/bulkdata/{{path:path}}", wado_frames.bulkdata, ["GET"]),
    ]


_INSTANCE = "/studies/{study}/series/{series}/instances/{sop}"
_HOT = (f"{_INSTANCE}/frames/{{frames}}", "/studies/{study}/series/{series}/metadata", "/studies/{study}/metadata",
        "/studies/{study}/series", "/studies", f"{_INSTANCE}/bulkdata/{{path:path}}")  # fmt: skip


def routes(metrics: bool = True) -> list[BaseRoute]:
    """Every route of the gateway: DICOMweb under the default and each named source, health, metrics, the browser."""
    from starlette.routing import Mount, Route

    from . import browser, health

    # no two of these templates match one path, so the order is free: a viewer's most frequent
    # requests first, as the router tries them one by one (frames were the 36th regex)
    table = sorted(dicomweb_table(), key=lambda row: _HOT.index(row[0]) if row[0] in _HOT else len(_HOT))
    out: list[BaseRoute] = []
    for path, endpoint, methods in table:
        out += [Route(f"/{{source}}/dicom-web{path}", endpoint, methods=methods),
                Route(f"/dicom-web{path}", endpoint, methods=methods)]  # fmt: skip
    out += [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
    ]
    if metrics:
        from .metrics import metrics_endpoint

        out.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    out += [
        Route("/", browser.index, methods=["GET"]),
        Route("/favicon.ico", browser.favicon, methods=["GET"]),
        Route("/api/sources", browser.list_sources, methods=["GET"]),
        Mount("/browser", browser.static_files(), name="browser"),
    ]
    return out


def _noting(handler: Handler) -> Handler:
    """An error handler that also puts the error in the request's record (last error, backend error metrics)."""

    async def handle(request: Request, exc: Exception) -> Response:
        note(error=exc)
        return await handler(request, exc)

    return handle


_DEFAULTS: dict[str, Any] = {
    "sources": None,
    "token": None,
    "cors_origins": None,
    "default_source": None,
    "metadata_ttl": 30.0,
    "max_cached_studies": 200,
    "max_stow_bytes": 1 << 30,
    "public_url": None,
    "gzip": True,
    "cache": None,
    "public_health": False,
    "metrics": True,
    "access_log": True,
    "allowed_hosts": None,
    "max_stow_parts": 10_000,
    "stow_spool_bytes": 16 << 20,
}


def create_app(
    host: Host | str | os.PathLike[str] | None = None,
    *,
    sources: Sequence[str] | None = None,
    token: str | None = None,
    cors_origins: Sequence[str] | None = None,
    default_source: str | None = None,
    metadata_ttl: float = 30.0,
    max_cached_studies: int = 200,
    max_stow_bytes: int = 1 << 30,
    max_stow_parts: int = 10_000,
    stow_spool_bytes: int = 16 << 20,
    public_url: str | None = None,
    gzip: bool = True,
    cache: str | None = None,
    public_health: bool = False,
    metrics: bool = True,
    access_log: bool = True,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The ASGI application serving ``host``'s sources (all, or ``sources``) as DICOMweb.

    ``host``: a :class:`~datasources.Host`, or a configuration file, or None: then the file
    named by ``DATASOURCES_CONFIG`` and the options in ``DATASOURCES_GATEWAY`` (see
    :mod:`.factory`; keyword arguments given here win), so ASGI servers can call it as a factory.

    ``token``: when given, every request but the browser page (and ``/healthz``, ``/readyz``
    with ``public_health``) needs ``Authorization: Bearer <token>``. ``cors_origins``: origins
    a browser viewer may call from (``["*"]`` for any). ``metadata_ttl``: seconds a study's
    metadata is served from the store before it is fetched again. ``public_url``: the
    gateway's address as clients see it, when a reverse proxy stands in front (URLs in
    answers are built from it). ``cache``: a ``redis://`` URL for a metadata and QIDO cache
    shared by workers and machines, with the same TTL and bounds. ``allowed_hosts``: the
    ``Host`` headers answered (others get 400, against DNS rebinding; ``"*"`` for any); None
    (the default here) answers any, ``datasources serve`` defaults to its bind address,
    ``localhost`` and the public URL's host. ``max_stow_parts``: parts a STOW body may hold;
    ``stow_spool_bytes``: a STOW body past this size is spooled to a temporary file.
    """
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
    except ImportError as exc:  # pragma: no cover - the extra is documented
        raise ConfigurationError("the gateway needs Starlette: pip install 'datasources[gateway]'") from exc
    from ..host import Host
    from .health import Health
    from .lifecycle import Drain, lifespan
    from .observe import Observe

    settings = {
        "sources": sources, "token": token, "cors_origins": cors_origins, "default_source": default_source,
        "metadata_ttl": metadata_ttl, "max_cached_studies": max_cached_studies, "max_stow_bytes": max_stow_bytes,
        "public_url": public_url, "gzip": gzip, "cache": cache, "public_health": public_health,
        "metrics": metrics, "access_log": access_log, "allowed_hosts": allowed_hosts,
        "max_stow_parts": max_stow_parts, "stow_spool_bytes": stow_spool_bytes,
    }  # fmt: skip
    if not isinstance(host, Host):
        from .factory import load

        host, from_env = load(host)
        for key, value in from_env.items():
            if settings[key] == _DEFAULTS[key]:
                settings[key] = value
    token = settings["token"]
    if token is not None and not token.strip():
        raise ConfigurationError("gateway: the token is empty")
    shared = None
    if settings["cache"]:
        from .redis_cache import RedisCache

        shared = RedisCache(settings["cache"], ttl=settings["metadata_ttl"], max_studies=settings["max_cached_studies"])
    gateway = Gateway(
        host,
        sources=settings["sources"],
        default_source=settings["default_source"],
        metadata_ttl=settings["metadata_ttl"],
        max_cached_studies=settings["max_cached_studies"],
        max_stow_bytes=settings["max_stow_bytes"],
        max_stow_parts=settings["max_stow_parts"],
        stow_spool_bytes=settings["stow_spool_bytes"],
        public_url=settings["public_url"],
        shared_cache=shared,
    )
    health = Health(gateway, shared)
    sinks: list[Callable[[Any], None]] = [health]
    if settings["metrics"]:
        from .metrics import MetricsSink

        sinks.append(MetricsSink())
    if settings["access_log"]:
        from .access_log import AccessLog

        sinks.append(AccessLog())
    public = ("/healthz", "/readyz") if settings["public_health"] else ()
    middleware = [
        Middleware(Observe, sinks=sinks, default_source=gateway.default_source),
        *middleware_stack(
            token,
            settings["cors_origins"],
            settings["gzip"],
            also_public=public,
            allowed_hosts=settings["allowed_hosts"],
        ),
        Middleware(Drain, health=health),
    ]
    app = Starlette(
        routes=routes(metrics=settings["metrics"]),
        middleware=middleware,
        exception_handlers={kind: _noting(handler) for kind, handler in exception_handlers().items()},
        lifespan=lifespan(health),
    )
    app.state.gateway = gateway
    app.state.health = health
    return app
