"""The HTTP side of the dicomweb source: one pooled session, retries, auth, typed errors.

- Idempotent requests (GET, HEAD) are retried on 429/502/503/504 and on connection resets,
  with backoff, honouring ``Retry-After`` (urllib3 ``Retry``); POSTs are never retried.
- The ``Authorization`` header is added per request and only for the configured roots' origins;
  a token provider is asked again once after a 401.
- Every failure is one typed exception with the URL minus its credentials; no secret is ever
  logged or put in a message.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Mapping
from typing import Any

import orjson
import requests
from datasources import multipart
from datasources.errors import (
    AuthenticationError,
    BackendTimeoutError,
    ConnectionFailedError,
    HTTPError,
    MalformedResponseError,
    UnsafePathError,
    redact_url,
)
from datasources.naturalize import paused_gc
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .config import DicomWebConfig, _origin

__all__ = ["DicomWebClient"]

log = logging.getLogger("datasources.dicomweb")

RETRY_STATUSES = (429, 502, 503, 504)


class _CappedRetry(Retry):
    """urllib3's Retry, but a ``Retry-After`` of an hour is not waited for: at most this long."""

    MAX_RETRY_AFTER = 60.0

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.MAX_RETRY_AFTER)


class _Session(requests.Session):
    """A session that drops every credential, not only ``Authorization``, on a redirect elsewhere."""

    def __init__(self, is_trusted: Any, secret_headers: tuple[str, ...]) -> None:
        super().__init__()
        self._is_trusted = is_trusted
        self._secret_headers = secret_headers

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if not self._is_trusted(prepared_request.url or ""):
            for name in ("Authorization", "Proxy-Authorization", "Cookie", *self._secret_headers):
                prepared_request.headers.pop(name, None)


class DicomWebClient:
    """Requests to one DICOMweb server (its QIDO, WADO and STOW roots)."""

    def __init__(self, config: DicomWebConfig, name: str = "dicomweb") -> None:
        self.config = config
        self.name = name
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """The pooled session, made on first use (the factory does no I/O and opens nothing)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    retry = _CappedRetry(
                        total=self.config.retries,
                        connect=self.config.retries,
                        read=self.config.retries,
                        status=self.config.retries,
                        backoff_factor=self.config.backoff,
                        status_forcelist=RETRY_STATUSES,
                        allowed_methods=frozenset({"GET", "HEAD"}),
                        respect_retry_after_header=True,
                        raise_on_status=False,
                    )
                    adapter = HTTPAdapter(
                        max_retries=retry, pool_connections=4, pool_maxsize=max(4, self.config.max_workers * 2)
                    )
                    session = _Session(self.is_trusted, tuple(self.config.headers))
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    session.headers.update(self.config.headers)
                    session.verify = self.config.verify
                    session.trust_env = False  # no proxy or netrc credentials picked up behind our back
                    self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- requests -----------------------------------------------------------------------------

    def is_trusted(self, url: str) -> bool:
        return _origin(url) in self.config.trusted_origins

    def request(
        self,
        method: str,
        url: str,
        *,
        accept: str | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
        ok: tuple[int, ...] = (200,),
        timeout: float | None = None,
    ) -> requests.Response:
        trusted = self.is_trusted(url)
        if not trusted and self.config.bulk_data_auth == "refuse-others":
            raise UnsafePathError(f"{self.name}: refusing to fetch {redact_url(url)}: not one of the configured roots")
        headers: dict[str, str] = {}
        if accept:
            headers["Accept"] = accept
        if content_type:
            headers["Content-Type"] = content_type
        if not trusted:
            # static headers may carry secrets too: strip them for other origins
            headers.update({k: None for k in self.config.headers})  # type: ignore[misc]
        auth = self.config.auth
        for attempt in (0, 1):
            if trusted and auth.kind != "none":
                headers["Authorization"] = auth.header(refresh=attempt == 1) or ""
            response = self._send(method, url, headers, data, timeout)
            if response.status_code == 401 and attempt == 0 and trusted and auth.refreshable:
                log.info("%s: 401 from %s; asking the token provider again", self.name, redact_url(url))
                response.close()
                continue
            break
        if response.status_code not in ok:
            raise self._error(method, url, response)
        return response

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None, timeout: float | None
    ) -> requests.Response:
        log.debug("%s %s", method, redact_url(url))
        try:
            return self.session.request(
                method, url, headers=dict(headers), data=data, timeout=timeout or self.config.timeout
            )
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            raise MalformedResponseError(f"{self.name}: {redact_url(url)}: the answer was cut short") from _scrubbed(
                exc
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            if not _is_timeout(exc):
                raise ConnectionFailedError(
                    f"{self.name}: {method} {redact_url(url)} failed: {_reason(exc)}"
                ) from _scrubbed(exc)
            raise BackendTimeoutError(
                f"{self.name}: {method} {redact_url(url)} timed out after {timeout or self.config.timeout:g}s"
            ) from _scrubbed(exc)
        except requests.RequestException as exc:
            raise ConnectionFailedError(
                f"{self.name}: {method} {redact_url(url)} failed: {type(exc).__name__}"
            ) from _scrubbed(exc)

    def _error(self, method: str, url: str, response: requests.Response) -> HTTPError:
        detail = _detail(response)
        response.close()
        if response.status_code in (401, 403):
            return AuthenticationError(response.status_code, url, method, detail)
        return HTTPError(response.status_code, url, method, detail)

    # -- bodies -------------------------------------------------------------------------------

    def get_json(self, url: str, *, ok: tuple[int, ...] = (200, 204)) -> Any:
        """GET a DICOM JSON answer; gzip bodies without ``Content-Encoding`` (static servers) too."""
        response = self.request("GET", url, accept="application/dicom+json, application/json", ok=ok)
        body = _read(response, url, self.name)
        if response.status_code == 204 or not body.strip():
            return []
        if body[:2] == b"\x1f\x8b":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                raise MalformedResponseError(f"{self.name}: {redact_url(url)}: broken gzip body: {exc}") from None
        try:
            with paused_gc():
                return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponseError(f"{self.name}: {redact_url(url)} did not answer JSON: {exc}") from None

    def get_parts(self, url: str, accept: str) -> list[multipart.Part]:
        response = self.request("GET", url, accept=accept)
        body = _read(response, url, self.name)
        if body[:2] == b"\x1f\x8b" and not response.headers.get("Content-Type", "").startswith("multipart/"):
            body = gzip.decompress(body)
        content_type = response.headers.get("Content-Type") or ""
        if not content_type.lower().startswith("multipart/"):
            return [multipart.Part({"content-type": content_type}, body)]  # a single-part answer
        return multipart.parse(body, content_type, error=MalformedResponseError)


def _read(response: requests.Response, url: str, name: str) -> bytes:
    try:
        return response.content
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
        raise MalformedResponseError(f"{name}: {redact_url(url)}: the answer was cut short") from _scrubbed(exc)
    except requests.Timeout as exc:
        raise BackendTimeoutError(f"{name}: {redact_url(url)}: timed out reading the answer") from _scrubbed(exc)
    except requests.ConnectionError as exc:
        raise ConnectionFailedError(f"{name}: {redact_url(url)}: connection lost reading the answer") from _scrubbed(
            exc
        )


def _detail(response: requests.Response) -> str | None:
    try:
        text = response.text[:300]
    except Exception:
        return None
    if not text:
        return None
    try:
        data = orjson.loads(text) if text.lstrip().startswith("{") else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, Mapping):
        for key in ("Message", "message", "Details", "error"):
            if isinstance(data.get(key), str):
                return data[key][:200]
    return " ".join(text.split())[:200]


def _is_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout that used up the retries as a ConnectionError."""
    if isinstance(exc, requests.Timeout):
        return True
    from urllib3.exceptions import MaxRetryError, NewConnectionError
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    reason = exc.args[0] if exc.args else None
    if not isinstance(reason, MaxRetryError):
        return False
    # a refused connection is a NewConnectionError, which urllib3 derives from its timeout error
    return isinstance(reason.reason, Urllib3Timeout) and not isinstance(reason.reason, NewConnectionError)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Connection reset", "Remote end closed"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


class _Cause(Exception):
    """The transport error, kept as the cause without its request (which holds the headers)."""


def _scrubbed(exc: BaseException) -> BaseException:
    # requests' exceptions keep the PreparedRequest, whose headers hold the Authorization value
    return _Cause(type(exc).__name__)
