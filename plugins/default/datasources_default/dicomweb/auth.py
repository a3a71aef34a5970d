"""Credentials that keep working: static ones, token providers that refresh, and the Session auth class.

``requestOptions.auth`` becomes one :class:`Credentials`. A token provider (a callable, a
``"module:function"``, OAuth2 client credentials or refresh token, Google application-default
credentials, Azure identity) is asked for a token at the first request and again shortly before
its ``expires_in`` runs out; a 401 asks once more and the request is sent once more. Refreshes
are single-flight: threads that find the token stale (or all got a 401 with the same token)
wait for one refresh. :class:`SessionAuth` is set as ``session.auth``, so every request of the
session carries the current value, and only to the configured origins. Secrets live in
:class:`Secret` (``${ENV}`` or ``*File``, read when needed); no repr, log line or message holds one.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import requests
from datasources.errors import (
    AuthenticationError,
    ConfigurationError,
    DataSourcesError,
    strip_query,
)
from datasources.forwarding import current_authorization

if TYPE_CHECKING:
    from .tokens import Secret, Token

__all__ = ["Credentials", "SessionAuth", "Secret", "parse_auth"]


def __getattr__(name: str) -> Any:
    """``Secret`` from tokens.py, imported when asked for: a source without auth never needs it."""
    if name == "Secret":
        from .tokens import Secret

        return Secret
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


log = logging.getLogger("datasources.dicomweb.auth")

MAX_SKEW = 60.0  # refresh at most this long before a token expires, at least 10% of its lifetime before


class Credentials:
    """Static credentials (or none); the base of refreshable ones."""

    refreshable = False

    def __init__(self, kind: str = "none", value: str | None = None) -> None:
        self.kind = kind
        self._value = value

    def header(self) -> str | None:
        """The ``Authorization`` value to send now."""
        return self._value

    def refresh(self, used: str | None) -> str | None:
        """After a 401 with ``used``: a fresh value (static credentials have none)."""
        return self._value

    def at_hand(self) -> bool:
        """Whether :meth:`header` answers without I/O (a token provider may have to be asked)."""
        return True

    def __repr__(self) -> str:
        return f"Credentials({self.kind})"


class TokenCredentials(Credentials):
    """A token from ``fetch``, cached until shortly before it expires; refreshed by one thread at a time."""

    refreshable = True

    def __init__(self, kind: str, fetch: Callable[[], Token], source: str = "dicomweb") -> None:
        super().__init__(kind)
        self._fetch = fetch
        self._source = source
        self._lock = threading.Lock()
        self._refresh_at: float | None = None
        self.refreshes = 0  # how many tokens were fetched (tests and diagnostics)

    def _fresh(self) -> bool:
        return self._value is not None and (self._refresh_at is None or time.monotonic() < self._refresh_at)

    def _renew(self) -> str:
        try:
            token = self._fetch()
        except DataSourcesError:
            raise
        except Exception as exc:  # a provider's own error: named by type only, its text may hold anything
            error = AuthenticationError(401, "", "GET", source=self._source)
            error.args = (f"{self._source}: the {self.kind} token provider failed ({type(exc).__name__})",)
            raise error from None
        self.refreshes += 1
        self._value = token.value
        if token.expires_in is None:
            self._refresh_at = None
        else:
            lifetime = max(0.0, token.expires_in)
            self._refresh_at = time.monotonic() + lifetime - min(MAX_SKEW, lifetime * 0.1)
        log.debug("%s: new token (expires in %s s)", self.kind, token.expires_in)
        return token.value

    def at_hand(self) -> bool:
        return self._fresh()

    def header(self) -> str | None:
        if self._fresh():
            return self._value
        with self._lock:
            return self._value if self._fresh() else self._renew()

    def refresh(self, used: str | None) -> str | None:
        with self._lock:
            if self._value is not None and self._value != used and self._fresh():
                return self._value  # another thread refreshed while this one waited
            return self._renew()


# -- providers ------------------------------------------------------------------------------


def _secret(spec: Mapping[str, Any], key: str, required: bool) -> Secret | None:
    from .tokens import Secret

    if spec.get(f"{key}File"):
        return Secret(key, file=str(spec[f"{key}File"]))
    if spec.get(key):
        if not isinstance(spec[key], str):
            raise ConfigurationError(f"requestOptions.auth.{key} must be a string")
        return Secret(key, value=spec[key])
    if required:
        raise ConfigurationError(f"requestOptions.auth needs {key} or {key}File")
    return None


_TYPES = ("provider", "oauth2-client-credentials", "oauth2-refresh-token", "google", "azure")


def parse_auth(
    value: Any, *, source: str = "dicomweb", timeout: float = 30.0, verify: bool | str = True
) -> Credentials:
    """``requestOptions.auth`` as :class:`Credentials` (see docs/sources/dicomweb.md, "Authentication")."""
    if value is None:
        return Credentials()
    # tokens.py (Secret, the providers, the OAuth2 grant) only for a source that has auth
    from .tokens import OAuth2Grant, Secret, as_token, azure_provider, google_provider, import_function

    if callable(value):
        return TokenCredentials("token provider", lambda: as_token(value(), "the token provider"), source)
    if isinstance(value, str):
        if value.lower().startswith("bearer "):
            return Credentials("bearer", "Bearer " + Secret("auth", value[7:].strip()).get())
        resolved = Secret("auth", value).get()
        if ":" in resolved:
            return Credentials("basic", "Basic " + base64.b64encode(resolved.encode()).decode())
        return Credentials("bearer", f"Bearer {resolved}")
    if not isinstance(value, Mapping):
        raise ConfigurationError("requestOptions.auth must be 'user:password', a bearer token, a mapping or a callable")
    kind = value.get("type")
    if kind is None:
        if "token" in value or "tokenFile" in value:
            token = _secret(value, "token", True)
            assert token is not None
            return Credentials("bearer", f"Bearer {token.get()}")
        if "username" in value:
            password = _secret(value, "password", False)
            pair = f"{Secret('username', str(value['username'])).get()}:{password.get() if password else ''}"
            return Credentials("basic", "Basic " + base64.b64encode(pair.encode()).decode())
        if "provider" in value:
            kind = "provider"
        else:
            raise ConfigurationError(
                f"requestOptions.auth: a mapping needs 'token', 'username' or 'type' (one of {', '.join(_TYPES)})"
            )
    if kind == "provider":
        function = value.get("provider")
        function = import_function(function) if isinstance(function, str) else function
        if not callable(function):
            raise ConfigurationError("requestOptions.auth.provider must be 'module:function' or a callable")
        return TokenCredentials("token provider", lambda: as_token(function(), "the token provider"), source)
    if kind in ("oauth2-client-credentials", "oauth2-refresh-token"):
        token_url = value.get("tokenUrl")
        if not isinstance(token_url, str) or not token_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"requestOptions.auth type {kind!r} needs tokenUrl, an http(s) URL")
        client_auth = value.get("clientAuth", "basic")
        if client_auth not in ("basic", "post"):
            raise ConfigurationError("requestOptions.auth.clientAuth must be 'basic' or 'post'")
        refresh = kind == "oauth2-refresh-token"
        scope = value.get("scope")
        grant = OAuth2Grant(
            source=source,
            token_url=token_url,
            client_id=str(value["clientId"]) if value.get("clientId") else None,
            client_secret=_secret(value, "clientSecret", not refresh),
            refresh_token=_secret(value, "refreshToken", True) if refresh else None,
            scope=" ".join(scope) if isinstance(scope, list) else scope,
            audience=value.get("audience"),
            client_auth=client_auth,
            timeout=timeout,
            verify=verify,
        )
        if not refresh and not grant.client_id:
            raise ConfigurationError("requestOptions.auth type 'oauth2-client-credentials' needs clientId")
        return TokenCredentials(f"oauth2 {'refresh token' if refresh else 'client credentials'}", grant, source)
    if kind == "google":
        scopes = value.get("scopes") or ["https://www.googleapis.com/auth/cloud-healthcare"]
        scopes = [scopes] if isinstance(scopes, str) else list(scopes)
        return TokenCredentials("google", google_provider(scopes), source)
    if kind == "azure":
        return TokenCredentials(
            "azure", azure_provider(str(value.get("scope") or "https://dicom.healthcareapis.azure.com/.default"))
        )
    raise ConfigurationError(f"requestOptions.auth.type must be one of {', '.join(_TYPES)}, not {kind!r}")


def public_auth(value: Any) -> Any:
    """``requestOptions.auth`` for ``get_config()``: what it is and where tokens come from, no secret."""
    if not isinstance(value, Mapping):
        return "***"
    shown = ("type", "tokenUrl", "clientId", "scope", "scopes", "audience", "clientAuth", "provider")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in shown and not callable(item):
            out[key] = strip_query(item) if key == "tokenUrl" and isinstance(item, str) else item
        elif not callable(item):
            out[key] = "***"
    return out


class SessionAuth(requests.auth.AuthBase):
    """``session.auth``: the current credentials on every request to a trusted origin; one retry after a 401."""

    def __init__(self, credentials: Credentials, is_trusted: Callable[[str], bool], forward: bool = False) -> None:
        self.credentials = credentials
        self._is_trusted = is_trusted
        self.forward = forward

    def __repr__(self) -> str:
        return f"SessionAuth({self.credentials!r}, forward={self.forward})"

    def forwarded(self) -> str | None:
        """The gateway client's own Authorization, when this source forwards it."""
        return current_authorization() if self.forward else None

    def header_at_hand(self) -> tuple[bool, str | None]:
        """``(True, value)`` when the value to send needs no I/O now; ``(False, None)`` when it does."""
        forwarded = self.forwarded()
        if forwarded:
            return True, forwarded
        if not self.credentials.at_hand():
            return False, None
        return True, self.credentials.header()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self._is_trusted(request.url or ""):
            request.headers.pop("Authorization", None)
            return request
        value = self.forwarded() or self.credentials.header()
        if value:
            request.headers["Authorization"] = value
        request.register_hook("response", self._after)
        return request

    def _after(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if (
            response.status_code != 401
            or not self.credentials.refreshable
            or getattr(request, "_ds_retried", False)
            or self.forwarded()
            or not self._is_trusted(request.url or "")
            or not isinstance(request.body, bytes | str | type(None))
        ):
            return response
        log.info("401 from %s: refreshing the token once", strip_query(request.url or ""))
        value = self.credentials.refresh(request.headers.get("Authorization"))
        response.close()
        retry = request.copy()
        retry._ds_retried = True  # type: ignore[attr-defined]
        if value:
            retry.headers["Authorization"] = value
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again
