"""The bounded transport under the dicomweb client: deadlines, capped retries, bounded inflation, log redaction.

A request's deadline lives in a context variable while it is sent, so urllib3's ``Retry`` (one
object per session) can cut its waits and stop retrying when no time is left. Bodies are read
here chunk by chunk, so a server that drips its answer is cut off at the deadline and a gzip
body inflates into at most ``maxDecompressedBytes``.
"""

from __future__ import annotations

import contextvars
import logging
import time
import zlib
from typing import Any

import requests
from datasources.errors import (
    BackendTimeoutError,
    DataSourcesError,
    MalformedResponseError,
    redact_text,
    redact_url,
)
from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError, ResponseError
from urllib3.util.retry import Retry

__all__ = ["DEADLINE", "CappedRetry", "inflate", "read_body"]

_CHUNK = 1 << 16

# the deadline of the request being sent in this thread, for the Retry below
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("dicomweb_deadline", default=None)


class _RedactQueries(logging.Filter):
    """Masks secret query values (``?access_token=...``) in urllib3's request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_REDACT = _RedactQueries()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection", "datasources.dicomweb"):
    if _REDACT not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_REDACT)


def _remaining() -> float | None:
    deadline = DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


class CappedRetry(Retry):
    """urllib3's Retry, but no wait (``Retry-After`` or backoff) beyond 60 s or the request's deadline;
    a ``Retry-After`` longer than the time left ends the retrying at once."""

    MAX_RETRY_AFTER = 60.0

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        if seconds is None:
            return None
        left = _remaining()
        return min(seconds, self.MAX_RETRY_AFTER, max(0.0, left) if left is not None else self.MAX_RETRY_AFTER)

    def get_backoff_time(self) -> float:
        left = _remaining()
        return min(super().get_backoff_time(), max(0.0, left)) if left is not None else super().get_backoff_time()

    def increment(self, method: Any = None, url: Any = None, response: Any = None, error: Any = None,
                  _pool: Any = None, _stacktrace: Any = None) -> Retry:  # fmt: skip
        left = _remaining()
        if left is not None:
            wait = (
                super().get_retry_after(response) if response is not None and self.respect_retry_after_header else None
            )
            if left <= 0 or (wait is not None and min(wait, self.MAX_RETRY_AFTER) > left):
                raise MaxRetryError(_pool, url, error or ResponseError("no time left for another try"))
        return super().increment(method, url, response, error, _pool, _stacktrace)


def inflate(
    decoder: Any, data: bytes, out: bytearray, limit: int, url: str, name: str, over: Exception | None = None
) -> None:
    """Inflate ``data`` into ``out``, never holding more than ``limit`` bytes of output.

    Past the limit: ``over`` when given (the event loop's share, not the configured bound), else
    the error that names ``maxDecompressedBytes``."""
    while data and not decoder.eof:
        out += decoder.decompress(data, limit - len(out) + 1)
        if len(out) > limit:
            if over is not None:
                raise over
            raise MalformedResponseError(
                f"{name}: {redact_url(url)}: the compressed answer inflates past {limit} bytes "
                "(requestOptions.maxDecompressedBytes)"
            )
        data = decoder.unconsumed_tail


def read_body(response: requests.Response, url: str, name: str, deadline: float, limit: int) -> None:
    """Read the whole body into ``response._content``: before the deadline, inflated within ``limit``."""
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    decoder = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(wbits=47)  # gzip or zlib, told apart by the header
    elif encoding not in ("identity", ""):
        response.close()
        raise MalformedResponseError(f"{name}: {redact_url(url)}: unsupported Content-Encoding {encoding!r}")
    out = bytearray()
    raw = response.raw
    try:
        while True:
            chunk = raw.read1(_CHUNK, decode_content=False)
            if not chunk:
                break
            if decoder is None:
                out += chunk
            else:
                inflate(decoder, chunk, out, limit, url, name)
            if time.monotonic() > deadline:  # still coming: a dripping server is cut off here
                raise BackendTimeoutError(
                    f"{name}: {redact_url(url)}: the answer took longer than the deadline (requestOptions.deadline)"
                )
    except BaseException as exc:
        response.close()
        if isinstance(exc, DataSourcesError):
            raise
        if isinstance(exc, ReadTimeoutError | TimeoutError):
            raise BackendTimeoutError(f"{name}: {redact_url(url)}: timed out reading the answer") from None
        if isinstance(exc, ProtocolError | ConnectionError | OSError):
            raise MalformedResponseError(f"{name}: {redact_url(url)}: the answer was cut short") from None
        if isinstance(exc, zlib.error):
            raise MalformedResponseError(f"{name}: {redact_url(url)}: broken {encoding} body: {exc}") from None
        raise
    if decoder is not None and not decoder.eof and out:
        response.close()
        raise MalformedResponseError(f"{name}: {redact_url(url)}: the {encoding} answer was cut short")
    response._content = bytes(out)
    response._content_consumed = True
    response.close()  # the connection goes back to the pool
