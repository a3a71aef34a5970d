"""Middleware of the gateway: the bearer token check, CORS for browser viewers, gzip.

The browser page (``/``, ``/browser/...``) holds no data, so it is public even when the
gateway wants a token; a CORS preflight (``OPTIONS``) carries no credentials and is let through.
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

__all__ = ["BearerAuth", "ForwardAuthorization", "middleware_stack", "public_path"]


def public_path(path: str) -> bool:
    """Whether ``path`` is served without a token (the study browser's page and files)."""
    return path in ("/", "/favicon.ico") or path.startswith("/browser/")


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


def middleware_stack(
    token: str | None, cors_origins: Sequence[str] | None, gzip: bool, also_public: Collection[str] = ()
) -> list[Middleware]:
    """The middleware, outermost first: CORS (so a 401 still carries its headers), gzip, the token.

    ``also_public``: paths served without the token too (``/healthz`` with ``--public-health``).
    """
    from starlette.middleware import Middleware

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
        extra = frozenset(also_public)
        public = (lambda path: public_path(path) or path in extra) if extra else public_path
        middleware.append(Middleware(BearerAuth, token=token.strip(), public=public))
    middleware.append(Middleware(ForwardAuthorization, token=token.strip() if token else None))
    return middleware
