"""A metadata and QIDO cache shared by workers and machines, in Redis (``--cache redis://...``; redis-py).

It holds what the in-process cache holds, with the same bounds: WADO-RS metadata bodies for
at most ``max_studies`` studies, at most 8 bodies a study, for ``ttl`` seconds; and QIDO
answers, ``max_studies`` of them, for ``ttl`` seconds. A STOW into a study drops that study's
bodies and every QIDO answer of the source (a generation number in their keys).

A Redis that is down or slow is no cache, never an error: each call gives up after
``timeout`` seconds, logs one warning per outage, and the cache is not tried again for
``retry_after`` seconds. Calls block, so the gateway makes them in its worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError

__all__ = ["RedisCache", "redacted_url"]

log = logging.getLogger("datasources.gateway")

_MAX_BODIES = 8


def redacted_url(url: str) -> str:
    """``url`` without its password, for logs and answers."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


class RedisCache:
    """Metadata bodies and QIDO answers in one Redis, under the key prefix ``prefix``."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float,
        max_studies: int,
        prefix: str = "datasources:gateway",
        timeout: float = 0.5,
        retry_after: float = 5.0,
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            shown = redacted_url(url)
            raise ConfigurationError(f"gateway: --cache {shown!r}: use a redis://, rediss:// or unix:// URL")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise ConfigurationError("the Redis cache needs redis-py: pip install 'datasources[redis]'") from exc
        self.url = redacted_url(url)
        self.ttl = float(ttl)
        self.max_studies = int(max_studies)
        self.prefix = prefix
        self.retry_after = retry_after
        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._down_until = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RedisCache {self.url} ttl={self.ttl:g}s max_studies={self.max_studies}>"

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    @property
    def up(self) -> bool:
        """False while an outage is being waited out."""
        return time.monotonic() >= self._down_until

    def _call(self, what: str, fn: Any) -> Any:
        if not self.enabled or not self.up:
            return None
        try:
            result = fn(self._client)
        except self._errors as exc:
            with self._lock:
                first = self.up
                self._down_until = time.monotonic() + self.retry_after
            if first:
                log.warning(
                    "gateway: the Redis cache %s is not answering (%s: %s); serving without it, retrying in %gs",
                    self.url,
                    what,
                    type(exc).__name__,
                    self.retry_after,
                )
            return None
        if self._down_until:
            with self._lock:
                if self._down_until:
                    self._down_until = 0.0
                    log.warning("gateway: the Redis cache %s answers again", self.url)
        return result

    def ping(self) -> tuple[bool, float]:
        """Whether Redis answers now, and how long it took (seconds); tried even during an outage."""
        start = time.perf_counter()
        try:
            self._client.ping()
            ok = True
        except self._errors:
            ok = False
        return ok, time.perf_counter() - start

    # -- keys ----------------------------------------------------------------------------------

    def _study_key(self, source: str, study: str) -> str:
        return f"{self.prefix}:meta:{source}:{study}"

    @staticmethod
    def _field(series: str | None, root: str) -> str:
        return f"{series or '*'}|{root}"

    # -- metadata bodies -----------------------------------------------------------------------

    def get_metadata(self, source: str, study: str, series: str | None, root: str) -> bytes | None:
        """A study's (or series') WADO-RS metadata body, or None."""
        key, field = self._study_key(source, study), self._field(series, root)
        return self._call("get", lambda r: r.hget(key, field))  # type: ignore[no-any-return]

    def put_metadata(self, source: str, study: str, series: str | None, root: str, body: bytes) -> None:
        key, field = self._study_key(source, study), self._field(series, root)
        index = f"{self.prefix}:studies"
        ttl_ms = max(1, int(self.ttl * 1000))

        def put(r: Any) -> None:
            if r.hlen(key) >= _MAX_BODIES:
                r.delete(key)
            now = time.time()
            with r.pipeline(transaction=False) as pipe:
                pipe.hset(key, field, body)
                pipe.pexpire(key, ttl_ms)
                pipe.zadd(index, {key: now})
                pipe.zremrangebyscore(index, "-inf", now - self.ttl)
                pipe.execute()
            self._trim(r, index)

        self._call("put", put)

    def forget_study(self, source: str, study: str) -> None:
        """After a STOW into ``study``: its bodies and the source's QIDO answers are gone."""
        key = self._study_key(source, study)

        def forget(r: Any) -> None:
            with r.pipeline(transaction=False) as pipe:
                pipe.delete(key)
                pipe.zrem(f"{self.prefix}:studies", key)
                pipe.incr(f"{self.prefix}:qido-generation:{source}")
                pipe.execute()

        self._call("forget", forget)

    # -- QIDO answers --------------------------------------------------------------------------

    def _qido_key(self, r: Any, source: str, request_key: str) -> str:
        generation = r.get(f"{self.prefix}:qido-generation:{source}") or b"0"
        digest = hashlib.sha256(request_key.encode("utf-8")).hexdigest()
        return f"{self.prefix}:qido:{source}:{generation.decode()}:{digest}"

    def get_qido(self, source: str, request_key: str) -> bytes | None:
        """A QIDO answer for ``request_key`` (level, scope, query string and root), or None."""
        return self._call("get", lambda r: r.get(self._qido_key(r, source, request_key)))  # type: ignore[no-any-return]

    def put_qido(self, source: str, request_key: str, body: bytes) -> None:
        index = f"{self.prefix}:qido-index"
        ttl_ms = max(1, int(self.ttl * 1000))

        def put(r: Any) -> None:
            key = self._qido_key(r, source, request_key)
            now = time.time()
            with r.pipeline(transaction=False) as pipe:
                pipe.set(key, body, px=ttl_ms)
                pipe.zadd(index, {key: now})
                pipe.zremrangebyscore(index, "-inf", now - self.ttl)
                pipe.execute()
            self._trim(r, index)

        self._call("put", put)

    def _trim(self, r: Any, index: str) -> None:
        """Keep at most ``max_studies`` entries under ``index``: the oldest go first."""
        excess = r.zcard(index) - self.max_studies
        if excess > 0:
            victims = [key for key, _ in r.zpopmin(index, excess)]
            if victims:
                r.delete(*victims)

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._client.close()
