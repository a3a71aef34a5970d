"""The gateway application: a :class:`~datasources.Host` served as standard DICOMweb.

``create_app(host)`` returns a Starlette (ASGI) application. Every served source answers
under ``/{sourceName}/dicom-web/...``, the default one also under ``/dicom-web/...``; the
study browser is at ``/``. Source calls block (files, HTTP), so they run in the worker
thread pool, never on the event loop.

Metadata flows as everywhere else: ``retrieve.series.metadata`` fills the host's metadata
store, and WADO-RS metadata is read back from the store and denaturalized. The gateway
remembers which source filled which study and when, so a study is fetched again after
``metadata_ttl`` seconds, after a STOW into it, or when another source asks for the same
UID (the store is keyed by UID, one per host).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    BackendError,
    BackendTimeoutError,
    ConfigurationError,
    DatasetError,
    DataSourcesError,
    DataSourceUnavailableError,
    HTTPError,
    InvalidQueryError,
    NotFoundError,
    NotSupportedError,
    StoreError,
    UnknownDataSourceError,
    UnsafePathError,
    safe_message,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

    from ..host import Host
    from ..interface import DataSource

__all__ = ["Gateway", "create_app", "status_for"]

log = logging.getLogger("datasources.gateway")

DICOM_JSON = "application/dicom+json"
_MAX_BODIES = 8  # metadata answers kept per loaded study (its series, and the URLs clients reach us by)


# -- errors -> HTTP statuses ---------------------------------------------------------------


def status_for(exc: BaseException) -> int:
    """The HTTP status a typed error is answered with."""
    if isinstance(exc, InvalidQueryError | DatasetError):
        return 400
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
    import orjson
    from starlette.responses import Response

    body = orjson.dumps({"error": message, "type": kind, "status": status})
    return Response(body, status_code=status, media_type="application/json", headers=dict(headers or {}))


# -- bearer token --------------------------------------------------------------------------


class BearerAuth:
    """ASGI middleware: every request but the public page needs ``Authorization: Bearer <token>``.

    Only the SHA-256 of the token is kept, and tokens are compared digest to digest with
    :func:`hmac.compare_digest`, so neither the token nor its length leaks through timing,
    a repr or a log line.
    """

    def __init__(self, app: ASGIApp, token: str, public: Callable[[str], bool]) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode("utf-8")).digest()
        self._public = public

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"

    def check(self, header: bytes | None) -> str | None:
        """None when the header carries the token, else the OAuth error code for WWW-Authenticate."""
        if not header:
            return ""
        scheme, _, credentials = header.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return "invalid_request"
        given = hashlib.sha256(credentials.strip().encode("utf-8")).digest()
        return None if hmac.compare_digest(given, self._digest) else "invalid_token"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or self._public(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        problem = self.check(header)
        if problem is None:
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer realm="datasources gateway"'
        if problem:
            challenge += f', error="{problem}"'
        message = "a bearer token is required" if not problem else "the bearer token is not valid"
        response = error_response(401, message, "AuthenticationRequired", {"WWW-Authenticate": challenge})
        await response(scope, receive, send)


class ForwardAuthorization:
    """ASGI middleware: the client's ``Authorization`` is published (:mod:`datasources.forwarding`) for
    sources configured with ``requestOptions.forwardAuthorization: true``; never the gateway's own token."""

    def __init__(self, app: ASGIApp, token: str | None = None) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode("utf-8")).digest() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from ..forwarding import forwarded_authorization

        header = None
        if scope["type"] == "http":
            raw = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if raw and raw.strip():
                header = raw.decode("latin-1").strip()
                _, _, credentials = header.partition(" ")
                given = hashlib.sha256(credentials.strip().encode("utf-8")).digest()
                if self._digest is not None and hmac.compare_digest(given, self._digest):
                    header = None  # the gateway's own token stays here
        with forwarded_authorization(header):
            await self.app(scope, receive, send)


def _caller() -> str | None:
    """Whose credentials a source call runs with: a digest of the forwarded Authorization, or None."""
    from ..forwarding import current_authorization

    value = current_authorization()
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else None


# -- the gateway's state -------------------------------------------------------------------


@dataclass
class _Loaded:
    source: str
    at: float
    series: frozenset[str] | None  # None: the whole study
    caller: str | None = None  # whose forwarded credentials loaded it: another caller loads it again
    # WADO-RS metadata bodies already made from this load: (series or None, gateway root) -> JSON
    bodies: dict[tuple[str | None, str], bytes] = field(default_factory=dict)


class _KeyLock:
    """One study's lock. Used as ``with gateway._lock_for(uid):`` so the ``with`` holds the object
    itself: the registry keeps only weak references, and a lock nobody holds may be collected."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()

    def __enter__(self) -> _KeyLock:
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class Gateway:
    """Which sources are served, and the study metadata they filled into the host's store."""

    def __init__(
        self,
        host: Host,
        *,
        sources: Sequence[str] | None = None,
        default_source: str | None = None,
        metadata_ttl: float = 30.0,
        max_cached_studies: int = 200,
        max_stow_bytes: int = 1 << 30,
        public_url: str | None = None,
    ) -> None:
        self.host = host
        names = list(dict.fromkeys(sources)) if sources else list(host.source_names)
        known = set(host.source_names)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigurationError(
                f"gateway: no data source named {', '.join(map(repr, unknown))}; configured: "
                f"{', '.join(map(repr, host.source_names)) or 'none'}"
            )
        bad = [n for n in names if not n or "/" in n]
        if bad:
            raise ConfigurationError(f"gateway: source names {bad!r} cannot be URL path segments")
        if not names:
            raise ConfigurationError("gateway: there is no data source to serve")
        if default_source is None:
            active = host.active_data_source_name
            default_source = active if active in names else names[0]
        elif default_source not in names:
            raise ConfigurationError(f"gateway: the default source {default_source!r} is not served")
        if metadata_ttl < 0 or max_cached_studies < 1 or max_stow_bytes < 1:
            raise ConfigurationError("gateway: metadata_ttl >= 0, max_cached_studies >= 1, max_stow_bytes >= 1")
        self.sources: tuple[str, ...] = tuple(names)
        self.default_source = default_source
        self.metadata_ttl = float(metadata_ttl)
        self.max_cached_studies = int(max_cached_studies)
        self.max_stow_bytes = int(max_stow_bytes)
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"gateway: public_url must be an http(s) URL, not {public_url!r}")
        self.public_url = public_url.rstrip("/") if public_url else None
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, _KeyLock] = weakref.WeakValueDictionary()
        self._state = threading.Lock()

    def __repr__(self) -> str:
        return f"<Gateway sources={list(self.sources)!r} default={self.default_source!r}>"

    def base_url(self, request: Request) -> str:
        """The gateway's own URL, for the RetrieveURLs and BulkDataURIs it hands out.

        ``public_url`` when configured (behind a reverse proxy). Otherwise the request's Host
        header, with the port the connection came in on when the header has none and that
        port is not the scheme's default: dicomweb-client sends ``Host: 127.0.0.1`` without
        the port, and a URL built from that points at port 80.
        """
        if self.public_url:
            return self.public_url
        url = request.base_url
        server = request.scope.get("server")
        if url.port is None and server and server[1] not in (None, {"http": 80, "https": 443}.get(url.scheme)):
            url = url.replace(port=server[1])
        return str(url).rstrip("/")

    # -- sources ---------------------------------------------------------------------------

    def data_source(self, name: str | None) -> tuple[str, DataSource]:
        """``(name, source)`` for a request; the default source when ``name`` is None."""
        chosen = self.default_source if name is None else name
        if chosen not in self.sources:
            raise UnknownDataSourceError(chosen, self.sources)
        return chosen, self.host.get_data_source(chosen)

    # -- metadata through the store --------------------------------------------------------

    def _lock_for(self, study: str) -> _KeyLock:
        with self._state:
            lock = self._locks.get(study)
            if lock is None:
                lock = _KeyLock()
                self._locks[study] = lock
            return lock

    def _drop(self, study: str, entry: _Loaded | None, fallback: DataSource | None = None) -> None:
        """Forget a study: the source's own cache of it and the store's copy."""
        owner = fallback
        if entry is not None:
            try:
                owner = self.host.get_data_source(entry.source)
            except DataSourcesError:
                owner = fallback
        if owner is not None:
            try:
                owner.delete_study_metadata(study)
            except DataSourcesError as exc:
                log.warning("gateway: forgetting study %s: %s", study, exc)
        self.host.metadata_store.remove_study(study)
        with self._state:
            if self._loaded.get(study) is entry:
                self._loaded.pop(study, None)

    def _ensure(self, name: str, data_source: DataSource, study: str, series: str | None) -> None:
        store = self.host.metadata_store
        now = time.monotonic()
        with self._state:
            entry = self._loaded.get(study)
        caller = _caller()
        fresh = entry is not None and entry.source == name and now - entry.at <= self.metadata_ttl
        fresh = fresh and entry is not None and entry.caller == caller
        if fresh and entry is not None and (entry.series is None or (series is not None and series in entry.series)):
            with self._state:
                if study in self._loaded:
                    self._loaded.move_to_end(study)
            return
        if entry is not None and not fresh:
            self._drop(study, entry)
            entry = None
        elif entry is None and store.get_study(study) is not None:
            self._drop(study, None, data_source)  # filled elsewhere: start from this source's own view
        data_source.retrieve.series.metadata(study, series_instance_uids=[series] if series else None)
        if series is None:
            loaded = _Loaded(name, now, None, caller=caller)
        elif entry is not None and entry.series is not None:
            loaded = _Loaded(name, entry.at, entry.series | {series}, caller=caller)
        else:
            loaded = _Loaded(name, now, frozenset({series}), caller=caller)
        with self._state:
            self._loaded[study] = loaded
            self._loaded.move_to_end(study)
            excess = len(self._loaded) - self.max_cached_studies
            victims = [(k, v) for k, v in list(self._loaded.items())[: max(0, excess)] if k != study]
        for key, old in victims:
            lock = self._lock_for(key)
            if lock.lock.acquire(blocking=False):  # never wait for another study's lock while holding one
                try:
                    self._drop(key, old)
                finally:
                    lock.lock.release()

    def metadata_body(
        self,
        name: str,
        data_source: DataSource,
        study: str,
        series: str | None,
        root: str,
        render: Callable[[list[dict[str, Any]]], bytes],
    ) -> bytes:
        """The WADO-RS metadata of a study (or one series) as JSON bytes, made once per load.

        Denaturalizing a 1000-instance study costs about 150 ms; while the study's metadata
        is fresh, the same answer is served again from memory.
        """
        with self._lock_for(study):
            if series is None:
                instances = self.study_instances(name, data_source, study)
            else:
                instances = self.series_instances(name, data_source, study, series)
            with self._state:
                entry = self._loaded.get(study)
            key = (series, root)
            if entry is not None and key in entry.bodies:
                return entry.bodies[key]
            body = render(instances)
            if entry is not None and entry.source == name:
                if len(entry.bodies) >= _MAX_BODIES:  # each Host header makes its own URLs: keep a few
                    entry.bodies.pop(next(iter(entry.bodies)))
                entry.bodies[key] = body
            return body

    def study_instances(self, name: str, data_source: DataSource, study: str) -> list[dict[str, Any]]:
        """Every instance of a study, as the store holds it (loaded first if need be)."""
        with self._lock_for(study):
            self._ensure(name, data_source, study, None)
            record = self.host.metadata_store.get_study(study)
            if record is None:
                raise NotFoundError(f"study {study!r} is not in data source {name!r}")
            return [inst for series in record.get("series", ()) for inst in series.get("instances", ())]

    def series_instances(self, name: str, data_source: DataSource, study: str, series: str) -> list[dict[str, Any]]:
        with self._lock_for(study):
            self._ensure(name, data_source, study, series)
            record = self.host.metadata_store.get_series(study, series)
            if record is None:
                raise NotFoundError(f"series {series!r} of study {study!r} is not in data source {name!r}")
            return list(record.get("instances", ()))

    def instance(self, name: str, data_source: DataSource, study: str, series: str, sop: str) -> dict[str, Any]:
        for candidate in self.series_instances(name, data_source, study, series):
            if candidate.get("SOPInstanceUID") == sop:
                return candidate
        raise NotFoundError(f"instance {sop!r} is not in series {series!r} of data source {name!r}")

    def cached_instance(self, name: str, study: str, series: str, sop: str) -> dict[str, Any] | None:
        """An instance already in the store for this source (no loading), or None."""
        with self._state:
            entry = self._loaded.get(study)
        if entry is None or entry.source != name or time.monotonic() - entry.at > self.metadata_ttl:
            return None
        if entry.caller != _caller():
            return None
        return self.host.metadata_store.get_instance(study, series, sop)

    def forget(self, name: str, data_source: DataSource, studies: Iterable[str]) -> None:
        """After a STOW: the next metadata request for these studies fetches them again."""
        for study in set(studies):
            with self._lock_for(study):
                with self._state:
                    entry = self._loaded.get(study)
                if entry is not None:
                    self._drop(study, entry)
                else:
                    try:
                        data_source.delete_study_metadata(study)
                    except DataSourcesError as exc:
                        log.warning("gateway: forgetting study %s: %s", study, exc)


# -- the application -----------------------------------------------------------------------


def _public_path(path: str) -> bool:
    return path in ("/", "/favicon.ico") or path.startswith("/browser/")


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
    if status >= 500 or isinstance(exc, BackendError):
        log.log(
            logging.ERROR if status >= 500 else logging.WARNING,
            "gateway: %s %s -> %d: %s",
            request.method,
            request.url.path,
            status,
            safe_message(exc),
        )
    headers = {}
    if isinstance(exc, NotSupportedError) and request.method == "POST" and exc.operation == "store.dicom":
        status, headers = 405, {"Allow": "GET, HEAD"}
    return error_response(status, client_message(exc), type(exc).__name__, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", None) or "error"
    headers = getattr(exc, "headers", None) or {}
    names = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 406: "NotAcceptable",
             413: "PayloadTooLarge", 415: "UnsupportedMediaType"}  # fmt: skip
    return error_response(status, str(detail), names.get(status, "HTTPError"), headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("gateway: %s %s failed", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}", "InternalError")


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
        from starlette.exceptions import HTTPException
        from starlette.middleware import Middleware
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
    middleware: list[Middleware] = []
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Accept", "Content-Type", "Range"],
                expose_headers=["Content-Type", "Content-Length", "Content-Location", "WWW-Authenticate", "Warning"],
                max_age=600,
            )
        )
    if gzip:
        from starlette.middleware.gzip import GZipMiddleware

        middleware.append(Middleware(GZipMiddleware, minimum_size=4096, compresslevel=1))
    if token is not None:
        middleware.append(Middleware(BearerAuth, token=token.strip(), public=_public_path))
    middleware.append(Middleware(ForwardAuthorization, token=token.strip() if token else None))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            DataSourcesError: _datasources_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.gateway = gateway
    return app
