"""The HTTP side of the dicomweb source: one pooled session, retries, auth, deadlines, typed errors.

- Idempotent requests (GET, HEAD) are retried on 429/502/503/504 and on connection resets,
  with backoff, honouring ``Retry-After`` (urllib3 ``Retry``) but never past the request's
  deadline; POSTs are never retried.
- Every request has a total deadline (``requestOptions.deadline``): a server that drips its
  answer a byte at a time is cut off. A gzip/deflate body is inflated here, at most
  ``maxDecompressedBytes``.
- Credentials come from one ``session.auth`` (:class:`~.auth.SessionAuth`), only for the
  configured roots' origins; a 401 refreshes a token once and retries once.
- Redirects are followed here, each hop a request of its own (credentials only for trusted
  origins); a request with a body is never sent to another origin.
- A root's query string (``?key=...``) is kept on every request under that root; secret query
  values are masked in urllib3's log lines and ours.
- Every failure is one typed exception with the URL minus its credentials.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import orjson
import requests
from datasources import multipart
from datasources.errors import (
    AuthenticationError,
    BackendTimeoutError,
    ConnectionFailedError,
    HTTPError,
    MalformedResponseError,
    RedirectRefusedError,
    UnsafePathError,
    redact_url,
)
from datasources.forwarding import current_authorization
from datasources.naturalize import paused_gc
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError

from .auth import SessionAuth
from .config import DicomWebConfig, _origin
from .transport import DEADLINE, CappedRetry, inflate, read_body

_CappedRetry = CappedRetry  # the name tests and callers knew

__all__ = ["DicomWebClient"]

log = logging.getLogger("datasources.dicomweb")

RETRY_STATUSES = (429, 502, 503, 504)
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
JSON_ACCEPT = "application/dicom+json, application/json"


class _Session(requests.Session):
    """A session that drops every credential, not only ``Authorization``, on a redirect elsewhere,
    and never re-sends a body to another origin (for callers of the ``session`` helper)."""

    def __init__(self, is_trusted: Any, secret_headers: tuple[str, ...]) -> None:
        super().__init__()
        self._is_trusted = is_trusted
        self._secret_headers = secret_headers

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        if prepared_request.body is not None and _origin(prepared_request.url or "") != _origin(
            response.request.url or ""
        ):
            raise RedirectRefusedError(
                f"{response.request.method} {redact_url(response.request.url or '')} was redirected to another "
                f"origin ({_origin(prepared_request.url or '')}): the body is not sent there"
            )
        super().rebuild_auth(prepared_request, response)
        if not self._is_trusted(prepared_request.url or ""):
            for name in ("Authorization", "Proxy-Authorization", "Cookie", *self._secret_headers):
                prepared_request.headers.pop(name, None)


class DicomWebClient:
    """Requests to one DICOMweb server (its QIDO, WADO and STOW roots)."""

    def __init__(self, config: DicomWebConfig, name: str = "dicomweb") -> None:
        self.config = config
        self.name = name
        self.auth = SessionAuth(config.auth, self.is_trusted, forward=config.forward_authorization)
        self._session: requests.Session | None = None
        self._lock = threading.Lock()
        self._trusted = config.trusted_origins  # asked on every request: worked out once
        self._accept_encoding = config.accept_encoding

    def __repr__(self) -> str:
        return f"DicomWebClient({self.name!r}, {self.auth!r})"

    @property
    def session(self) -> requests.Session:
        """The pooled session, made on first use (the factory does no I/O and opens nothing)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    retry = CappedRetry(
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
                    # gzip/deflate: what read_body inflates, bounded; identity from a backend on loopback
                    session.headers["Accept-Encoding"] = self._accept_encoding
                    session.auth = self.auth
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
        return _origin(url) in self._trusted

    def with_root_query(self, url: str) -> str:
        """``url`` with the query string of the root it lies under (``?key=...``), if that root has one."""
        for root, query in self.config.root_queries.items():
            if url == root or url.startswith((f"{root}/", f"{root}?")):
                base, _, existing = url.partition("?")
                have = set(existing.split("&")) if existing else set()
                extra = "&".join(p for p in query.split("&") if p and p not in have)
                if not extra:
                    return url
                return f"{base}?{extra}&{existing}" if existing else f"{base}?{extra}"
        return url

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
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request (following redirects here), read its whole body under the deadline.

        ``headers`` are added to every hop (conditional requests: ``If-None-Match``...)."""
        deadline = time.monotonic() + self.config.deadline
        url = self.with_root_query(url)
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._hop(method, url, accept, data, content_type, timeout, deadline, headers)
            location = response.headers.get("Location")
            if response.status_code not in REDIRECTS or not location or response.status_code in ok:
                break
            target = urljoin(url, location)
            if data is not None and response.status_code in (307, 308) and _origin(target) != _origin(url):
                raise RedirectRefusedError(
                    f"{self.name}: {method} {redact_url(url)} was redirected ({response.status_code}) to another "
                    f"origin, {_origin(target)}: the body is not sent there"
                )
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, data, content_type = "GET", None, None
            log.debug("%s: redirected to %s", self.name, redact_url(target))
            url = target
        else:
            raise ConnectionFailedError(f"{self.name}: {method} {redact_url(url)}: more than {MAX_REDIRECTS} redirects")
        if response.status_code not in ok:
            raise self._error(method, url, response)
        return response

    def _hop(
        self, method: str, url: str, accept: str | None, data: bytes | None, content_type: str | None,
        timeout: float | None, deadline: float, extra: Mapping[str, str] | None = None,
    ) -> requests.Response:  # fmt: skip
        trusted = self.is_trusted(url)
        if not trusted and self.config.bulk_data_auth == "refuse-others":
            raise UnsafePathError(f"{self.name}: refusing to fetch {redact_url(url)}: not one of the configured roots")
        headers: dict[str, Any] = dict(extra) if extra else {}
        if accept:
            headers["Accept"] = accept
        if content_type:
            headers["Content-Type"] = content_type
        if not trusted:
            # static headers may carry secrets too: strip them for other origins
            headers.update({k: None for k in self.config.headers})
        response = self._send(method, url, headers, data, timeout, deadline)
        read_body(response, url, self.name, deadline, self.config.max_decompressed_bytes)
        return response

    def _send(
        self, method: str, url: str, headers: Mapping[str, Any], data: bytes | None, timeout: float | None,
        deadline: float,
    ) -> requests.Response:  # fmt: skip
        if log.isEnabledFor(logging.DEBUG):  # redacting costs a URL parse per request: only when it is written
            log.debug("%s %s", method, redact_url(url))
        seconds = timeout or self.config.timeout
        left = max(0.001, deadline - time.monotonic())
        token = DEADLINE.set(deadline)
        try:
            return self.session.request(
                method, url, headers=dict(headers), data=data, timeout=min(seconds, left), stream=True,
                allow_redirects=False,
            )  # fmt: skip
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
                f"{self.name}: {method} {redact_url(url)} timed out after {min(seconds, left):g}s"
            ) from _scrubbed(exc)
        except requests.RequestException as exc:
            raise ConnectionFailedError(
                f"{self.name}: {method} {redact_url(url)} failed: {type(exc).__name__}"
            ) from _scrubbed(exc)
        finally:
            DEADLINE.reset(token)

    def _error(self, method: str, url: str, response: requests.Response) -> HTTPError:
        detail = _detail(response)
        response.close()
        if response.status_code in (401, 403):
            # a forwarding source refused with the client's credentials (or with none of its own): the client's 401
            forwarded = self.auth.forward and (current_authorization() is not None or self.config.auth.kind == "none")
            return AuthenticationError(response.status_code, url, method, detail, source=self.name, forwarded=forwarded)
        return HTTPError(response.status_code, url, method, detail)

    # -- bodies -------------------------------------------------------------------------------

    def get_json(self, url: str, *, ok: tuple[int, ...] = (200, 204)) -> Any:
        """GET a DICOM JSON answer; gzip bodies without ``Content-Encoding`` (static servers) too."""
        response = self.request("GET", url, accept=JSON_ACCEPT, ok=ok)
        return self.json_body(response, url)

    def json_body(self, response: requests.Response, url: str) -> Any:
        """The JSON of a read answer (``[]`` for 204 or an empty body), gunzipped when bare gzip."""
        body = response.content
        if response.status_code == 204 or not body.strip():
            return []
        if body[:2] == b"\x1f\x8b":
            body = self._gunzip(body, url)
        try:
            with paused_gc():
                return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponseError(f"{self.name}: {redact_url(url)} did not answer JSON: {exc}") from None

    def lane_headers(self, url: str) -> dict[str, str] | None:
        """The headers of a GET sent without the session (on the gateway's event loop, :mod:`.aio`),
        or None when only the session may send it: another origin, or a token to fetch first."""
        if not self.is_trusted(url):
            return None
        ready, value = self.auth.header_at_hand()
        if not ready:
            return None
        headers = {**self.config.headers, "Accept-Encoding": self._accept_encoding}
        if value:
            headers["Authorization"] = value
        return headers

    def get_parts(self, url: str, accept: str) -> list[multipart.Part]:
        response = self.request("GET", url, accept=accept)
        return self.parts_of(response.content, response.headers.get("Content-Type") or "", url)

    def parts_of(self, body: bytes, content_type: str, url: str) -> list[multipart.Part]:
        """The parts of a read answer (one part for a single-part one, gunzipped when bare gzip)."""
        if body[:2] == b"\x1f\x8b" and not content_type.startswith("multipart/"):
            body = self._gunzip(body, url)
        if not content_type.lower().startswith("multipart/"):
            return [multipart.Part({"content-type": content_type}, body)]  # a single-part answer
        return multipart.parse(body, content_type, error=MalformedResponseError)

    def _gunzip(self, body: bytes, url: str) -> bytes:
        """A gzip body sent without ``Content-Encoding`` (static trees), inflated within the limit."""
        out = bytearray()
        decoder = zlib.decompressobj(wbits=31)
        try:
            inflate(decoder, body, out, self.config.max_decompressed_bytes, url, self.name)
        except zlib.error as exc:
            raise MalformedResponseError(f"{self.name}: {redact_url(url)}: broken gzip body: {exc}") from None
        if not decoder.eof:
            raise MalformedResponseError(f"{self.name}: {redact_url(url)}: broken gzip body: it is cut short")
        return bytes(out)


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
    from urllib3.exceptions import NewConnectionError
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
