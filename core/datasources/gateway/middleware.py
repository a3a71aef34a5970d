"""Middleware of the gateway: the Host check, the bearer token check, CORS for browser viewers, gzip.

The browser page (``/``, and each of its static files by its exact path) holds no data, so it
is public even when the gateway wants a token; a CORS preflight (``OPTIONS``) carries no
credentials and is let through. Public paths are an exact list, never a prefix: a source can be
named ``browser`` and its DICOMweb routes must still need the token. A request whose ``Host``
header is not one of the allowed hosts is answered 400 before anything else (DNS rebinding:
a page on an attacker's name resolving to 127.0.0.1 must not read a loopback gateway).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from .http_errors import error_response

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "PUBLIC_PATHS",
    "AllowedHosts",
    "BearerAuth",
    "ForwardAuthorization",
    "host_name",
    "middleware_stack",
    "public_path",
]


def _public_paths() -> frozenset[str]:
    from .browser import STATIC

    files = {f"/browser/{entry.name}" for entry in STATIC.iterdir() if entry.is_file()}
    return frozenset({"/", "/favicon.ico", *files})


PUBLIC_PATHS: frozenset[str] = _public_paths()


def public_path(path: str) -> bool:
    """Whether ``path`` is served without a token: exactly the study browser's page and files."""
    return path in PUBLIC_PATHS


def host_name(header: str) -> str:
    """The host of a ``Host`` header, lower-cased, without its port (``[::1]:80`` -> ``::1``)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class AllowedHosts:
    """ASGI middleware: a request whose ``Host`` is not allowed gets 400 (DNS rebinding)."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = frozenset(host_name(h) for h in hosts if h.strip())
        self.any = "*" in self.hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        if host_name(header) in self.hosts:
            await self.app(scope, receive, send)
            return
        response = error_response(
            400, "this gateway does not answer for that Host header (see --allowed-hosts)", "BadHost"
        )
        await response(scope, receive, send)


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
        from ..forwarding import current_authorization, forwarded_authorization

        header = None
        if scope["type"] == "http":
            raw = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if raw and raw.strip():
                header = raw.decode("latin-1").strip()
                _, _, credentials = header.partition(" ")
                given = hashlib.sha256(credentials.strip().encode("utf-8")).digest()
                if self._digest is not None and hmac.compare_digest(given, self._digest):
                    header = None  # the gateway's own token stays here
        if header is None and current_authorization() is None:
            await self.app(scope, receive, send)  # nothing to forward, nothing forwarded already
            return
        with forwarded_authorization(header):
            await self.app(scope, receive, send)


def middleware_stack(
    token: str | None,
    cors_origins: Sequence[str] | None,
    gzip: bool,
    also_public: Collection[str] = (),
    allowed_hosts: Sequence[str] | None = None,
) -> list[Middleware]:
    """The middleware, outermost first: the Host check, CORS (so a 401 still carries its headers),
    gzip, the token.

    ``also_public``: paths served without the token too (``/healthz`` with ``--public-health``).
    ``allowed_hosts`` None: any Host (the application's default).
    """
    from starlette.middleware import Middleware

    middleware: list[Middleware] = []
    if allowed_hosts is not None:
        middleware.append(Middleware(AllowedHosts, hosts=list(allowed_hosts)))
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
        from .compression import GZip

        middleware.append(Middleware(GZip, minimum_size=4096, level=1))
    if token is not None:
        extra = frozenset(also_public)
        public = (lambda path: public_path(path) or path in extra) if extra else public_path
        middleware.append(Middleware(BearerAuth, token=token.strip(), public=public))
    middleware.append(Middleware(ForwardAuthorization, token=token.strip() if token else None))
    return middleware
