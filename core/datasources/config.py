"""Reading the application configuration: OHIF's ``dataSources`` shape, from a dict or a file.

A ``dataSources`` array copied out of an OHIF config works as it is: OHIF namespaces
such as ``@ohif/extension-default.dataSourcesModule.dicomweb`` map to this project's
extension of the same name (``default.dataSourcesModule.dicomweb``). Strings may use
``${ENV_VAR}`` (or ``${ENV_VAR:-fallback}``) so that secrets stay out of files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError
from .hookspecs import MODULE_TYPE
from .records import Record

__all__ = [
    "AppConfig",
    "DataSourceEntry",
    "default_config",
    "load_config",
    "normalize_namespace",
    "split_namespace",
]

_OHIF_PREFIX = "@ohif/extension-"
# compiled on first use (re caches it): a host configured without ``${...}`` never needs it
_ENV = r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}"


def normalize_namespace(namespace: str) -> str:
    """Map an OHIF namespace onto this project's extension names."""
    if namespace.startswith(_OHIF_PREFIX):
        return namespace[len(_OHIF_PREFIX) :]
    return namespace


def split_namespace(namespace: str) -> tuple[str, str]:
    """``"default.dataSourcesModule.dicomweb"`` -> ``("default", "dicomweb")``."""
    extension, sep, name = namespace.rpartition(f".{MODULE_TYPE}.")
    if not sep or not extension or not name:
        raise ConfigurationError(f"namespace {namespace!r} is not of the form '<extension>.{MODULE_TYPE}.<name>'")
    return extension, name


# Value classes on the start path are frozen Records, neither attrs nor dataclasses: importing
# attrs costs about 8 ms, and dataclasses compile their methods at import (records.py).
class DataSourceEntry(Record):
    """One entry of ``dataSources``: which kind of source, under which name, configured how."""

    _fields = ("namespace", "source_name", "configuration", "friendly_name")
    _no_repr = frozenset({"configuration"})

    namespace: str
    source_name: str
    configuration: Mapping[str, Any]
    friendly_name: str | None

    def __init__(
        self,
        namespace: str,
        source_name: str,
        configuration: Mapping[str, Any] | None = None,
        friendly_name: str | None = None,
    ) -> None:
        configuration = {} if configuration is None else configuration
        if not isinstance(configuration, Mapping):
            raise ConfigurationError(
                f"data source {source_name!r}: configuration must be a mapping, got {type(configuration).__name__}"
            )
        self._set(
            namespace=normalize_namespace(namespace),
            source_name=source_name,
            configuration=configuration,
            friendly_name=friendly_name,
        )

    @classmethod
    def from_dict(cls, data: Any, where: str = "dataSources entry") -> DataSourceEntry:
        """Read an OHIF-style entry (``namespace``, ``sourceName``, ``configuration``, ``friendlyName``)."""
        if isinstance(data, DataSourceEntry):
            return data
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{where} must be a mapping, got {type(data).__name__}")
        missing = [k for k in ("namespace", "sourceName") if not data.get(k)]
        if missing:
            raise ConfigurationError(f"{where} lacks {' and '.join(missing)}")
        for key in ("namespace", "sourceName"):
            if not isinstance(data[key], str):
                raise ConfigurationError(f"{where}: {key} must be a string, got {type(data[key]).__name__}")
        unknown = sorted(str(k) for k in set(data) - {"namespace", "sourceName", "configuration", "friendlyName"})
        if unknown:
            raise ConfigurationError(f"{where} ({data['sourceName']!r}) has unknown keys: {', '.join(unknown)}")
        configuration = data.get("configuration")
        entry = cls(
            namespace=data["namespace"],
            source_name=data["sourceName"],
            configuration=({} if configuration is None else configuration),
            friendly_name=data.get("friendlyName"),
        )
        split_namespace(entry.namespace)
        return entry

    @property
    def display_name(self) -> str:
        """``friendlyName`` from the configuration or the entry, else the source name."""
        name = self.configuration.get("friendlyName") or self.friendly_name
        return str(name) if name else self.source_name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "sourceName": self.source_name,
            "configuration": dict(self.configuration),
        }
        if self.friendly_name:
            out["friendlyName"] = self.friendly_name
        return out


class AppConfig(Record):
    """The whole configuration: the data sources and which one is the default."""

    _fields = ("data_sources", "default_data_source_name")

    data_sources: tuple[DataSourceEntry, ...]
    default_data_source_name: str | None

    def __init__(self, data_sources: tuple[DataSourceEntry, ...], default_data_source_name: str | None = None) -> None:
        self._set(data_sources=data_sources, default_data_source_name=default_data_source_name)

    @classmethod
    def from_dict(cls, data: Any, where: str = "configuration") -> AppConfig:
        if isinstance(data, AppConfig):
            return data
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{where} must be a mapping, got {type(data).__name__}")
        raw = data.get("dataSources")
        if raw is None:
            raise ConfigurationError(f"{where} has no 'dataSources' list")
        if not isinstance(raw, list | tuple):
            raise ConfigurationError(f"{where}: 'dataSources' must be a list, got {type(raw).__name__}")
        entries = tuple(DataSourceEntry.from_dict(e, f"{where}: dataSources[{i}]") for i, e in enumerate(raw))
        seen: set[str] = set()
        for entry in entries:
            if entry.source_name in seen:
                raise ConfigurationError(f"{where}: duplicate sourceName {entry.source_name!r}")
            seen.add(entry.source_name)
        default = data.get("defaultDataSourceName")
        if default is not None and not isinstance(default, str):
            raise ConfigurationError(f"{where}: defaultDataSourceName must be a string, got {type(default).__name__}")
        if default is not None and default not in seen:
            raise ConfigurationError(
                f"{where}: defaultDataSourceName {default!r} is not among the sources "
                f"({', '.join(repr(s) for s in sorted(seen)) or 'none'})"
            )
        if default is None and entries:
            default = entries[0].source_name
        return cls(entries, default)


def default_config() -> AppConfig:
    """The embedded default: the dicomjson source over the bundled sample studies."""
    return AppConfig.from_dict(
        {
            "defaultDataSourceName": "sample",
            "dataSources": [
                {
                    "namespace": "default.dataSourcesModule.dicomjson",
                    "sourceName": "sample",
                    "configuration": {"friendlyName": "Bundled sample studies", "bundled": "sample"},
                }
            ],
        },
        where="embedded default configuration",
    )


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | AppConfig | None) -> AppConfig:
    """Read a configuration from a mapping or a JSON, YAML or TOML file; ``None`` is the embedded default."""
    if source is None:
        return default_config()
    if isinstance(source, AppConfig):
        return source
    if isinstance(source, Mapping):
        return AppConfig.from_dict(_substitute(source, "configuration"))
    if not isinstance(source, str | os.PathLike):
        raise ConfigurationError(f"a configuration must be a mapping or a file path, got {type(source).__name__}")
    from pathlib import Path

    from .config_files import parse_file  # json, yaml and tomllib only when a file is read

    path = Path(source)
    if not path.is_file():
        raise ConfigurationError(f"configuration file {str(path)!r} does not exist")
    data = parse_file(path)
    return AppConfig.from_dict(_substitute(data, str(path)), where=str(path))


# nesting deeper than this is refused before anything walks it (Python's stack would give out)
MAX_DEPTH = 64


def _substitute(value: Any, where: str, depth: int = 0) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-fallback}`` in every string; a missing variable is an error."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def repl(match: re.Match[str]) -> str:
            name, fallback = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found is None:
                if fallback is None:
                    raise ConfigurationError(f"{where}: environment variable {name!r} is not set")
                return fallback
            return found

        return re.sub(_ENV, repl, value)
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_DEPTH:
        raise ConfigurationError(f"{where}: nested deeper than {MAX_DEPTH} levels (or refers to itself)")
    if isinstance(value, Mapping):
        return {k: _substitute(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute(v, where, depth + 1) for v in value]
    return value
