"""Error mapping of the gateway: typed errors to HTTP statuses, and the JSON error answers.

A backend's failure is named to the client, not detailed: its URLs and answers describe the
network behind the gateway, so they go to the gateway's log only (through
:func:`datasources.errors.safe_message`, which holds no secret).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    BackendDataError,
    BackendError,
    BackendTimeoutError,
    ClientInputError,
    DataSourcesError,
    DataSourceUnavailableError,
    HTTPError,
    NotFoundError,
    NotSupportedError,
    PayloadTooLargeError,
    StoreError,
    UnsafePathError,
    safe_message,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["client_message", "error_response", "exception_handlers", "scrub_paths", "status_for"]

log = logging.getLogger("datasources.gateway")

# A server-side path in a message: file URLs, Windows paths, and POSIX paths of two segments or more
# (not the ``0011/1/0022`` of a bulk data path, not a URL's path: those follow a word character or ':').
_PATHS = re.compile(r"file://[^\s'\"]*|\b[A-Za-z]:\\[^\s'\"]*|(?<![\w.:/~-])/[^\s'\"/]+(?:/[^\s'\"/]*)+")


def scrub_paths(text: str, source: str | None = None) -> str:
    """``text`` with every server-side path replaced by the source's name (sourceName)."""
    named = f"<data source {source}>" if source else "<a path on the server>"
    return _PATHS.sub(named, text)


def status_for(exc: BaseException) -> int:
    """The HTTP status a typed error is answered with."""
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, ClientInputError):  # what the client sent (a query, a STOW body)
        return 400
    if isinstance(exc, BackendDataError):  # what a backend sent
        return 502
    if isinstance(exc, UnsafePathError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, NotSupportedError):
        return 501
    if isinstance(exc, StoreError):
        return 409
    if isinstance(exc, DataSourceUnavailableError):
        return 503
    if isinstance(exc, BackendTimeoutError):
        return 504
    if isinstance(exc, AuthenticationError):
        # the backend refused a client's forwarded credentials: the client's to fix; else the gateway's own
        return exc.status if exc.forwarded and exc.status in (401, 403) else 502
    if isinstance(exc, HTTPError):
        return {400: 400, 404: 404, 410: 404}.get(exc.status, 502)
    if isinstance(exc, BackendError):
        return 502
    return 500


def error_response(status: int, message: str, kind: str, headers: Mapping[str, str] | None = None) -> Response:
    """The gateway's JSON error body: ``{"error", "type", "status"}``."""
    import orjson
    from starlette.responses import Response

    body = orjson.dumps({"error": message, "type": kind, "status": status})
    return Response(body, status_code=status, media_type="application/json", headers=dict(headers or {}))


def client_message(exc: BaseException) -> str:
    """What a client is told. A backend's failure is named, not detailed: its URLs and answers
    describe the network behind the gateway, so they go to the gateway's log only."""
    if isinstance(exc, HTTPError):
        verb = "refused the request" if 400 <= exc.status < 500 else "failed"
        return f"the data source's backend {verb} (HTTP {exc.status})"
    if isinstance(exc, BackendError):
        return f"the data source's backend failed ({type(exc).__name__})"
    return str(exc)


async def _datasources_error(request: Request, exc: Exception) -> Response:
    status = status_for(exc)
    headers = {}
    if isinstance(exc, NotSupportedError) and request.method == "POST" and exc.operation == "store.dicom":
        status, headers = 405, {"Allow": "GET, HEAD"}  # a source that does not store: not a server error
    if status >= 500 or isinstance(exc, BackendError):
        log.log(
            logging.ERROR if status >= 500 else logging.WARNING,
            "gateway: %s %s -> %d: %s",
            request.method,
            request.url.path,
            status,
            safe_message(exc),
        )
    source = request.path_params.get("source")
    if source is None:
        gateway = getattr(request.app.state, "gateway", None)
        source = getattr(gateway, "default_source", None)
    return error_response(status, scrub_paths(client_message(exc), source), type(exc).__name__, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", None) or "error"
    headers = getattr(exc, "headers", None) or {}
    names = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 406: "NotAcceptable",
             413: "PayloadTooLarge", 415: "UnsupportedMediaType"}  # fmt: skip
    return error_response(status, scrub_paths(str(detail)), names.get(status, "HTTPError"), headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("gateway: %s %s failed", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}", "InternalError")


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Coroutine[Any, Any, Response]]]:
    """Starlette's ``exception_handlers``: typed errors, HTTP errors, and anything else as a 500."""
    from starlette.exceptions import HTTPException

    return {DataSourcesError: _datasources_error, HTTPException: _http_error, Exception: _unexpected}
