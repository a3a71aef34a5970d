"""The configuration of a ``dimse`` source, checked in the factory (no network, no disk).

OHIF-style key names (``calledAETitle``, ``maxAssociations``...). A wrong type or value is a
:class:`~datasources.errors.ConfigurationError` naming the key; an unknown key is a warning
naming it. The TLS key file is a path, never its content, so nothing secret is held here.
"""

from __future__ import annotations

import os
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasources.errors import ConfigurationError

__all__ = ["CacheConfig", "DimseConfig", "Timeouts", "default_cache_folder"]

_TOP: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "friendlyName": (str,),
    "host": (str,),
    "port": (int,),
    "calledAETitle": (str,),
    "callingAETitle": (str,),
    "retrieve": (str,),
    "moveDestination": (str,),
    "storagePort": (int,),
    "storageHost": (str,),
    "maxAssociations": (int,),
    "timeouts": (Mapping,),
    "tls": (Mapping,),
    "cache": (Mapping, str, os.PathLike),
    "enableStudyLazyLoad": (bool,),
    "dicomUploadEnabled": (bool,),
}
_OHIF_KEYS = frozenset({"sourceName", "configurationAPI", "onConfiguration"})
_TIMEOUTS = ("connect", "acse", "dimse", "network")
_TLS = ("ca", "cert", "key")
_CACHE = {"folder": (str, os.PathLike), "maxBytes": (int,), "retentionMinutes": (int, float)}
_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", Mapping: "a mapping"}


def default_cache_folder() -> Path:
    """``$XDG_CACHE_HOME/datasources/dimse`` (``~/.cache/...``): the platform's user cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datasources" / "dimse"


def _check(where: str, key: str, value: Any, types: tuple[type, ...]) -> None:
    is_bool = isinstance(value, bool)
    ok = is_bool if bool in types else (isinstance(value, types) and not is_bool)
    if not ok:
        wanted = " or ".join(dict.fromkeys(_NAMES.get(t, "a path") for t in types))
        raise ConfigurationError(f"dimse: {where}{key} must be {wanted}, not {type(value).__name__} {value!r}")


def _ae_title(key: str, value: str) -> str:
    if not value.strip() or len(value) > 16 or "\\" in value or not value.isascii() or not value.isprintable():
        raise ConfigurationError(f"dimse: {key} must be 1 to 16 printable ASCII characters without '\\', not {value!r}")
    return value.strip()


def _port(key: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigurationError(f"dimse: {key} must be a TCP port (1-65535), not {value}")
    return value


@dataclass(frozen=True)
class Timeouts:
    """Seconds; ``None`` waits for ever (pynetdicom's meaning)."""

    connect: float | None = 10.0
    acse: float | None = 30.0
    dimse: float | None = 60.0
    network: float | None = 60.0


@dataclass(frozen=True)
class CacheConfig:
    folder: Path
    max_bytes: int = 2 * 1024**3
    retention_minutes: float = 24 * 60


@dataclass(frozen=True)
class DimseConfig:
    """A checked ``dimse`` configuration."""

    host: str
    port: int
    called_ae: str
    calling_ae: str
    retrieve: str
    move_destination: str | None
    storage_port: int | None
    storage_host: str
    max_associations: int
    timeouts: Timeouts
    tls: dict[str, str] | None
    cache: CacheConfig
    lazy: bool
    upload: bool
    name: str | None
    friendly_name: str | None

    @classmethod
    def from_mapping(cls, configuration: Mapping[str, Any]) -> DimseConfig:
        if not isinstance(configuration, Mapping):
            raise ConfigurationError(f"dimse: the configuration must be a mapping, not {type(configuration).__name__}")
        for key in configuration:
            if key not in _TOP and key not in _OHIF_KEYS:
                warnings.warn(f"dimse: unknown configuration key {key!r} is ignored", stacklevel=4)
        conf = {k: v for k, v in configuration.items() if k in _TOP and v is not None}
        for key, value in conf.items():
            _check("", key, value, _TOP[key])
        for required in ("host", "port", "calledAETitle"):
            if required not in conf:
                raise ConfigurationError(f"dimse: {required} is required (the PACS's address and AE title)")
        host = conf["host"].strip()
        if not host:
            raise ConfigurationError("dimse: host must not be empty")
        retrieve = conf.get("retrieve", "cget")
        if retrieve not in ("cget", "cmove"):
            raise ConfigurationError(f"dimse: retrieve must be 'cget' or 'cmove', not {retrieve!r}")
        move_destination = conf.get("moveDestination")
        storage_port = conf.get("storagePort")
        if retrieve == "cmove" and (move_destination is None or storage_port is None):
            raise ConfigurationError("dimse: retrieve 'cmove' needs moveDestination and storagePort (the source's SCP)")
        max_assoc = conf.get("maxAssociations", 4)
        if max_assoc < 1:
            raise ConfigurationError(f"dimse: maxAssociations must be 1 or more, not {max_assoc}")
        return cls(
            host=host,
            port=_port("port", conf["port"]),
            called_ae=_ae_title("calledAETitle", conf["calledAETitle"]),
            calling_ae=_ae_title("callingAETitle", conf.get("callingAETitle", "DATASOURCES")),
            retrieve=retrieve,
            move_destination=_ae_title("moveDestination", move_destination) if move_destination else None,
            storage_port=_port("storagePort", storage_port) if storage_port is not None else None,
            storage_host=conf.get("storageHost", "0.0.0.0"),
            max_associations=max_assoc,
            timeouts=_timeouts(conf.get("timeouts") or {}),
            tls=_tls(conf.get("tls")),
            cache=_cache(conf.get("cache")),
            lazy=conf.get("enableStudyLazyLoad", False),
            upload=conf.get("dicomUploadEnabled", True),
            name=conf.get("name"),
            friendly_name=conf.get("friendlyName"),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context from ``tls: {ca, cert, key}`` (read from disk: call at connect time)."""
        if self.tls is None:
            return None
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls.get("ca"))
            if self.tls.get("cert"):
                context.load_cert_chain(self.tls["cert"], self.tls.get("key"))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"dimse: tls files cannot be loaded: {type(exc).__name__}: {exc}") from None
        return context

    def peer(self) -> str:
        """``CALLING -> CALLED@host:port``: how errors name the peer."""
        return f"{self.calling_ae} -> {self.called_ae}@{self.host}:{self.port}"

    def public(self) -> dict[str, Any]:
        """What ``get_config()`` hands out (TLS as paths; no secret is ever configured inline)."""
        out: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "calledAETitle": self.called_ae,
            "callingAETitle": self.calling_ae,
            "retrieve": self.retrieve,
            "maxAssociations": self.max_associations,
            "timeouts": {k: getattr(self.timeouts, k) for k in _TIMEOUTS},
            "cache": {
                "folder": str(self.cache.folder),
                "maxBytes": self.cache.max_bytes,
                "retentionMinutes": self.cache.retention_minutes,
            },
            "enableStudyLazyLoad": self.lazy,
            "dicomUploadEnabled": self.upload,
        }
        if self.move_destination:
            out["moveDestination"] = self.move_destination
            out["storagePort"] = self.storage_port
            out["storageHost"] = self.storage_host
        if self.tls is not None:
            out["tls"] = dict(self.tls)
        for key, value in (("name", self.name), ("friendlyName", self.friendly_name)):
            if value is not None:
                out[key] = value
        return out


def _timeouts(given: Mapping[str, Any]) -> Timeouts:
    values: dict[str, float | None] = {}
    for key, value in given.items():
        if key not in _TIMEOUTS:
            raise ConfigurationError(f"dimse: timeouts.{key} is not a timeout; known: {', '.join(_TIMEOUTS)}")
        if value is not None:
            _check("timeouts.", key, value, (int, float))
            if value <= 0:
                raise ConfigurationError(f"dimse: timeouts.{key} must be more than 0 seconds, not {value}")
        values[key] = None if value is None else float(value)
    return Timeouts(**values)


def _tls(given: Mapping[str, Any] | None) -> dict[str, str] | None:
    if given is None:
        return None
    out: dict[str, str] = {}
    for key, value in given.items():
        if key not in _TLS:
            raise ConfigurationError(f"dimse: tls.{key} is not a TLS key; known: {', '.join(_TLS)}")
        if value is not None:
            _check("tls.", key, value, (str, os.PathLike))
            out[key] = os.path.abspath(os.path.expanduser(os.fspath(value)))
    if "key" in out and "cert" not in out:
        raise ConfigurationError("dimse: tls.key needs tls.cert")
    return out


def _cache(given: Mapping[str, Any] | str | os.PathLike[str] | None) -> CacheConfig:
    if given is None:
        return CacheConfig(default_cache_folder())
    if not isinstance(given, Mapping):
        given = {"folder": given}
    for key, value in given.items():
        if key not in _CACHE:
            raise ConfigurationError(f"dimse: cache.{key} is not a cache key; known: {', '.join(_CACHE)}")
        if value is not None:
            _check("cache.", key, value, _CACHE[key])
    folder = given.get("folder")
    if folder is not None and not os.fspath(folder).strip():
        raise ConfigurationError("dimse: cache.folder must not be empty")
    max_bytes = given.get("maxBytes", CacheConfig.max_bytes)
    retention = given.get("retentionMinutes", CacheConfig.retention_minutes)
    if max_bytes is not None and max_bytes < 1:
        raise ConfigurationError(f"dimse: cache.maxBytes must be 1 or more, not {max_bytes}")
    if retention is not None and retention <= 0:
        raise ConfigurationError(f"dimse: cache.retentionMinutes must be more than 0, not {retention}")
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(folder)))) if folder else default_cache_folder()
    return CacheConfig(path, max_bytes or CacheConfig.max_bytes, float(retention or CacheConfig.retention_minutes))
