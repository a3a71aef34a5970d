"""Where tokens come from: secrets (``${ENV}``, files), provider results, OAuth2 token endpoints, cloud SDKs.

Each provider is a callable returning a :class:`Token`; :class:`~.auth.TokenCredentials` caches
it and decides when to ask again. Errors name the source and the token endpoint (without its
query), never a secret; the cloud SDKs are optional extras imported at the first request.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from datasources.errors import AuthenticationError, ConfigurationError, ConnectionFailedError, strip_query

__all__ = ["OAuth2Grant", "Secret", "Token", "as_token", "google_provider", "azure_provider", "import_function"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Secret:
    """A secret value, a ``${ENV}`` reference or a file, resolved each time it is needed (rotation works)."""

    __slots__ = ("_file", "_value", "what")

    def __init__(self, what: str, value: str | None = None, file: str | None = None) -> None:
        self.what, self._value, self._file = what, value, file

    def get(self) -> str:
        if self._file is not None:
            try:
                text = Path(os.path.expanduser(self._file)).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"{self.what}File: cannot read {self._file}: {type(exc).__name__}") from None
            if not text:
                raise ConfigurationError(f"{self.what}File: {self._file} is empty")
            return text
        value = self._value or ""

        def env(match: re.Match[str]) -> str:
            found = os.environ.get(match.group(1))
            if found is None:
                raise ConfigurationError(f"{self.what}: environment variable {match.group(1)!r} is not set")
            return found

        return _ENV.sub(env, value)

    def __repr__(self) -> str:
        return f"Secret({self.what}=***)"


@dataclass
class Token:
    value: str  # the whole Authorization value, "Bearer ..."
    expires_in: float | None = None


def as_token(result: Any, where: str) -> Token:
    """What a provider returned: a token string, ``(token, expires_in)`` or an OAuth2-style mapping."""
    expires: Any = None
    if isinstance(result, tuple) and len(result) == 2:
        result, expires = result
    elif isinstance(result, Mapping):
        expires = result.get("expires_in", result.get("expiresIn"))
        result = result.get("access_token", result.get("token"))
    if not isinstance(result, str) or not result.strip():
        raise ConfigurationError(f"{where} returned no token")
    if expires is not None:
        try:
            expires = float(expires)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{where} returned an expires_in that is not a number") from None
    value = result.strip()
    if not value.lower().startswith(("bearer ", "basic ")):
        value = f"Bearer {value}"
    return Token(value, expires)


def import_function(spec: str) -> Callable[[], Any]:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"requestOptions.auth.provider must be 'module:function', not {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"requestOptions.auth.provider {spec!r} cannot be imported: {exc}") from None
    if not callable(target):
        raise ConfigurationError(f"requestOptions.auth.provider {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


@dataclass(repr=False)
class OAuth2Grant:
    """A token endpoint (RFC 6749): client credentials, or a refresh token (kept when rotated)."""

    source: str
    token_url: str
    client_id: str | None
    client_secret: Secret | None
    refresh_token: Secret | None
    scope: str | None
    audience: str | None
    client_auth: str
    timeout: float
    verify: bool | str

    def __post_init__(self) -> None:
        self._rotated: str | None = None
        self._session = requests.Session()
        self._session.trust_env = False

    def __call__(self) -> Token:
        form: dict[str, str] = {}
        if self.refresh_token is not None:
            form["grant_type"] = "refresh_token"
            form["refresh_token"] = self._rotated or self.refresh_token.get()
        else:
            form["grant_type"] = "client_credentials"
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        basic = None
        secret = self.client_secret.get() if self.client_secret is not None else None
        if self.client_id and secret is not None and self.client_auth == "basic":
            basic = (self.client_id, secret)
        elif self.client_id:
            form["client_id"] = self.client_id
            if secret is not None:
                form["client_secret"] = secret
        try:
            response = self._session.post(
                self.token_url, data=form, auth=basic, timeout=self.timeout, verify=self.verify,
                allow_redirects=False, headers={"Accept": "application/json"},
            )  # fmt: skip
        except requests.RequestException as exc:
            raise ConnectionFailedError(
                f"{self.source}: the token endpoint {strip_query(self.token_url)} failed: {type(exc).__name__}"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, Mapping):
            code = answer.get("error") if isinstance(answer, Mapping) else None
            detail = f"the token endpoint refused: {code}" if isinstance(code, str) else "the token endpoint refused"
            raise AuthenticationError(response.status_code, self.token_url, "POST", detail[:200], source=self.source)
        rotated = answer.get("refresh_token")
        if self.refresh_token is not None and isinstance(rotated, str) and rotated:
            self._rotated = rotated
        if not isinstance(answer.get("access_token"), str):
            raise AuthenticationError(200, self.token_url, "POST", "the answer has no access_token", source=self.source)
        return as_token(
            {"access_token": answer["access_token"], "expires_in": answer.get("expires_in")}, "the token endpoint"
        )


def google_provider(scopes: list[str]) -> Callable[[], Token]:
    """Google application-default credentials; the SDK is imported at the first request (an optional extra)."""
    found: list[Any] = []

    def fetch() -> Token:
        try:
            import google.auth
            import google.auth.transport.requests
        except ImportError:
            raise ConfigurationError(
                "requestOptions.auth type 'google' needs google-auth: pip install 'datasources-default[google]'"
            ) from None
        if not found:
            found.append(google.auth.default(scopes=scopes)[0])
        credentials = found[0]
        credentials.refresh(google.auth.transport.requests.Request())
        expiry = getattr(credentials, "expiry", None)  # naive UTC datetime
        expires_in = None
        if expiry is not None:
            import datetime

            expires_in = (expiry - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)).total_seconds()
        return as_token((credentials.token, expires_in), "google-auth")

    return fetch


def azure_provider(scope: str) -> Callable[[], Token]:
    """Azure ``DefaultAzureCredential``; the SDK is imported at the first request (an optional extra)."""
    found: list[Any] = []

    def fetch() -> Token:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise ConfigurationError(
                "requestOptions.auth type 'azure' needs azure-identity: pip install 'datasources-default[azure]'"
            ) from None
        if not found:
            found.append(DefaultAzureCredential())
        access = found[0].get_token(scope)
        return as_token((access.token, access.expires_on - time.time()), "azure-identity")

    return fetch
