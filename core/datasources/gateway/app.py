"""The gateway application: a :class:`~datasources.Host` served as standard DICOMweb.

``create_app(host)`` returns a Starlette (ASGI) application. Every served source answers
under ``/{sourceName}/dicom-web/...``, the default one also under ``/dicom-web/...``; the
study browser is at ``/``. Source calls block (files, HTTP), so they run in the worker
thread pool, never on the event loop.

This module only assembles: the gateway's state is in :mod:`.state`, error mapping in
:mod:`.http_errors`, the token, CORS and gzip in :mod:`.middleware`; none imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .http_errors import exception_handlers, status_for
from .middleware import middleware_stack
from .state import Gateway

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..host import Host

__all__ = ["Gateway", "create_app", "status_for"]


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

    from .browser import browser_routes
    from .dicomweb import DicomWebRoutes

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
    routes = DicomWebRoutes(gateway).routes() + browser_routes(gateway)
    app = Starlette(
        routes=routes,
        middleware=middleware_stack(token, cors_origins, gzip),
        exception_handlers=exception_handlers(),
    )
    app.state.gateway = gateway
    return app
