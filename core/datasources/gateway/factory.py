"""The gateway's settings from the environment, for ASGI servers that import an app factory.

``datasources.gateway:create_app`` called without a host (``uvicorn --factory``, gunicorn's
``'datasources.gateway:create_app()'``, each worker of ``datasources serve --workers N``)
builds the host from the configuration file named by ``DATASOURCES_CONFIG`` (the bundled
sample when unset) and reads its options from ``DATASOURCES_GATEWAY``, a JSON object::

    DATASOURCES_GATEWAY='{"cache": "redis://127.0.0.1:6379/0", "token_env": "GATEWAY_TOKEN"}'

Its keys are :data:`OPTIONS`. The token itself is never in it: ``token_env`` names the
environment variable that holds it, as ``datasources serve --token-env`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..host import Host

__all__ = ["CONFIG_VARIABLE", "OPTIONS", "OPTIONS_VARIABLE", "load"]

CONFIG_VARIABLE = "DATASOURCES_CONFIG"
OPTIONS_VARIABLE = "DATASOURCES_GATEWAY"

# option -> the JSON types it accepts
OPTIONS: dict[str, tuple[type, ...]] = {
    "sources": (list,),
    "default_source": (str,),
    "token_env": (str,),
    "cors_origins": (list,),
    "metadata_ttl": (int, float),
    "max_cached_studies": (int,),
    "max_stow_bytes": (int,),
    "public_url": (str,),
    "gzip": (bool,),
    "cache": (str,),
    "public_health": (bool,),
    "log_format": (str,),
    "log_level": (str,),
    "strict": (bool,),
}


def options_from_environment() -> dict[str, Any]:
    """The options in ``DATASOURCES_GATEWAY``, checked (unknown keys and wrong types are errors)."""
    raw = os.environ.get(OPTIONS_VARIABLE, "").strip()
    if not raw:
        return {}
    try:
        options = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"{OPTIONS_VARIABLE} is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ConfigurationError(f"{OPTIONS_VARIABLE} must be a JSON object")
    for key, value in options.items():
        allowed = OPTIONS.get(key)
        if allowed is None:
            raise ConfigurationError(f"{OPTIONS_VARIABLE}: unknown option {key!r}; known: {', '.join(sorted(OPTIONS))}")
        if value is not None and (not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)):
            raise ConfigurationError(f"{OPTIONS_VARIABLE}: {key} must be {' or '.join(t.__name__ for t in allowed)}")
    return options


def load(config: str | os.PathLike[str] | None) -> tuple[Host, dict[str, Any]]:
    """The host (from ``config``, else ``DATASOURCES_CONFIG``, else the bundled sample) and the options.

    The options hold ``token`` (read from the variable ``token_env`` names) instead of
    ``token_env``; logging is set up as ``log_format`` and ``log_level`` say.
    """
    from ..host import Host
    from .access_log import configure_logging

    options = options_from_environment()
    path = config if config is not None else os.environ.get(CONFIG_VARIABLE) or None
    token_env = options.pop("token_env", None)
    if token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise ConfigurationError(f"gateway: token_env {token_env}: that variable is not set or is empty")
        options["token"] = token
    configure_logging(options.pop("log_format", None) or "text", options.pop("log_level", None) or "info")
    strict = bool(options.pop("strict", False))
    if path is not None and not Path(path).is_file():
        raise ConfigurationError(f"gateway: the configuration file {str(path)!r} does not exist")
    host = Host.from_config(Path(path) if path is not None else None, strict=strict)
    return host, options
