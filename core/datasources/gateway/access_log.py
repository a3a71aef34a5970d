"""The access log: one line per request at ``info`` on ``datasources.gateway.access``, text or JSON lines.

A line names the method, the path with the query string's secret values masked, the status,
the bytes sent, the duration, the source and where a cacheable answer came from. uvicorn's
own access log is turned off by ``datasources serve``: it prints query strings as sent.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson

from .observe import Record

__all__ = ["AccessLog", "JsonFormatter", "configure_logging", "mask_query"]

log = logging.getLogger("datasources.gateway.access")

# Query parameters whose values are credentials: presigned URLs, OAuth, API keys
_SECRET_PARTS = ("token", "secret", "password", "passwd", "apikey", "api_key", "signature", "credential", "auth")
_SECRET_NAMES = frozenset({"key", "sig", "code", "pwd", "session", "sessionid", "jwt"})


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def mask_query(query: str) -> str:
    """The query string with every secret parameter's value replaced by ``***``."""
    if not query:
        return ""
    parts = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        shown = "***" if _is_secret(name) else quote(value, safe="*,.-_^:/")
        parts.append(f"{quote(name, safe='._-')}={shown}")
    return "&".join(parts)


class AccessLog:
    """The sink of :class:`~.observe.Observe` that writes the access log."""

    def __call__(self, record: Record) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        query = mask_query(record.query)
        target = f"{record.path}?{query}" if query else record.path
        fields = {
            "method": record.method,
            "path": target,
            "status": record.status,
            "bytes": record.bytes,
            "duration_ms": round(record.duration * 1000, 2),
            "source": record.source,
            "cache": record.cache,
            "pid": os.getpid(),
        }
        log.info(
            '"%s %s" %d %dB %.1fms source=%s cache=%s',
            record.method,
            target,
            record.status,
            record.bytes,
            record.duration * 1000,
            record.source or "-",
            record.cache or "-",
            extra={"access": fields},
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and an access line's fields."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "access", None)
        if fields:
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    """Handlers for the ``datasources`` and ``uvicorn`` loggers, to stderr, once per process."""
    if log_format not in ("text", "json"):
        from ..errors import ConfigurationError

        raise ConfigurationError(f"gateway: log format {log_format!r}: use text or json")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s"))
    handler.set_name("datasources-gateway")
    logger = logging.getLogger("datasources")
    logger.handlers = [h for h in logger.handlers if h.get_name() != "datasources-gateway"] + [handler]
    logger.setLevel(level.upper())
    server = logging.getLogger("uvicorn")  # the server's own lines in the same format
    server.handlers = [handler]
    server.setLevel(level.upper())
    server.propagate = False
