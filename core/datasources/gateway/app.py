"""The gateway application: a :class:`~datasources.Host` served as standard DICOMweb.

``create_app(host)`` returns a Starlette (ASGI) application. Every served source answers
under ``/{sourceName}/dicom-web/...``, the default one also under ``/dicom-web/...``; the
study browser is at ``/``. Source calls block (files, HTTP), so they run in the worker
thread pool, never on the event loop.

This module only assembles: the route table below names every endpoint, and the handlers
live in their own modules (:mod:`.qido`, :mod:`.wado_metadata`, :mod:`.wado_frames`,
:mod:`.stow`, :mod:`.browser`), which reach the :class:`~.state.Gateway` through the request
and never import this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .http_errors import exception_handlers, status_for
from .middleware import middleware_stack
from .state import Gateway

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ..host import Host

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


def routes() -> list[BaseRoute]:
    """Every route of the gateway: DICOMweb under the default and each named source, then the browser."""
    from starlette.routing import Mount, Route

    from . import browser

    table = dicomweb_table()
    out: list[BaseRoute] = [Route(f"/dicom-web{path}", endpoint, methods=methods) for path, endpoint, methods in table]
    out += [Route(f"/{{source}}/dicom-web{path}", endpoint, methods=methods) for path, endpoint, methods in table]
    out += [
        Route("/", browser.index, methods=["GET"]),
        Route("/favicon.ico", browser.favicon, methods=["GET"]),
        Route("/api/sources", browser.list_sources, methods=["GET"]),
        Mount("/browser", browser.static_files(), name="browser"),
    ]
    return out


def create_app(
    host: Host,
    *,
    sources: Sequence[str] | None = None,
    token: str | None = None,
    cors_origins: Sequence[str] | None = None,
    default_source: str | None = None,
    metadata_ttl: float = 30.0,
    max_cached_studies: int = 200,
    max_stow_bytes: int = 1 << 30,
    public_url: str | None = None,
    gzip: bool = True,
) -> Starlette:
    """The ASGI application serving ``host``'s sources (all, or ``sources``) as DICOMweb.

    ``token``: when given, every request but the browser page needs ``Authorization:
    Bearer <token>``. ``cors_origins``: origins a browser viewer may call from (``["*"]``
    for any). ``metadata_ttl``: seconds a study's metadata is served from the store before
    it is fetched again. ``public_url``: the gateway's address as clients see it, when a
    reverse proxy stands in front (URLs in answers are built from it).
    """
    try:
        from starlette.applications import Starlette
    except ImportError as exc:  # pragma: no cover - the extra is documented
        raise ConfigurationError("the gateway needs Starlette: pip install 'datasources[gateway]'") from exc

    if token is not None and not token.strip():
        raise ConfigurationError("gateway: the token is empty")
    gateway = Gateway(
        host,
        sources=sources,
        default_source=default_source,
        metadata_ttl=metadata_ttl,
        max_cached_studies=max_cached_studies,
        max_stow_bytes=max_stow_bytes,
        public_url=public_url,
    )
    app = Starlette(
        routes=routes(),
        middleware=middleware_stack(token, cors_origins, gzip),
        exception_handlers=exception_handlers(),
    )
    app.state.gateway = gateway
    return app
