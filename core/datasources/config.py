"""Reading the application configuration: OHIF's ``dataSources`` shape, from a dict or a file.

A ``dataSources`` array copied out of an OHIF config works as it is: OHIF namespaces
such as ``@ohif/extension-default.dataSourcesModule.dicomweb`` map to this project's
extension of the same name (``default.dataSourcesModule.dicomweb``). Strings may use
``${ENV_VAR}`` (or ``${ENV_VAR:-fallback}``) so that secrets stay out of files.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .hookspecs import MODULE_TYPE

__all__ = [
    "AppConfig",
    "DataSourceEntry",
    "default_config",
    "load_config",
    "normalize_namespace",
    "split_namespace",
]

_OHIF_PREFIX = "@ohif/extension-"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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


# Value classes on the start path are frozen dataclasses, not attrs: importing attrs costs
# about 8 ms, a quarter of the host's start budget (bench/bench_host_start.py).
@dataclass(frozen=True)
class DataSourceEntry:
    """One entry of ``dataSources``: which kind of source, under which name, configured how."""

    namespace: str
    source_name: str
    configuration: Mapping[str, Any] = field(default_factory=dict, repr=False)
    friendly_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespace", normalize_namespace(self.namespace))
        if not isinstance(self.configuration, Mapping):
            raise ConfigurationError(
                f"data source {self.source_name!r}: configuration must be a mapping, "
                f"got {type(self.configuration).__name__}"
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


@dataclass(frozen=True)
class AppConfig:
    """The whole configuration: the data sources and which one is the default."""

    data_sources: tuple[DataSourceEntry, ...]
    default_data_source_name: str | None = None

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
    path = Path(source)
    if not path.is_file():
        raise ConfigurationError(f"configuration file {str(path)!r} does not exist")
    data = _parse_file(path)
    return AppConfig.from_dict(_substitute(data, str(path)), where=str(path))


# nesting deeper than this is refused before anything walks it (Python's stack would give out)
MAX_DEPTH = 64
# nodes that YAML aliases may add to a document by repeating what they refer to: merge keys and
# shared blocks take a few; a "billion laughs" document takes billions, and is refused
ALIAS_EXPANSION_BUDGET = 10_000


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigurationError(
            f"{path}: not UTF-8 text: byte {exc.start} (line {line}) is {data[exc.start : exc.start + 1]!r}"
        ) from None


def _parse_file(path: Path) -> Any:
    text = _read_text(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            import json  # only for JSON files: the start path does not pay for it

            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        if suffix in (".yaml", ".yml"):
            return _load_yaml(text, path)
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            return tomllib.loads(text)
    except RecursionError:
        raise ConfigurationError(f"{path}: nested too deeply to be a configuration") from None
    except ConfigurationError:
        raise
    except ValueError as exc:  # TOMLDecodeError, and the int digit limit of every parser
        raise ConfigurationError(f"{path}: {str(exc)[:300]}") from None
    raise ConfigurationError(f"{path}: unknown configuration format {suffix!r} (use .json, .yaml, .yml or .toml)")


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load``, with the document's aliases checked before any of it is built."""
    import yaml

    loader = None
    try:
        _check_yaml_depth(text, path)
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigurationError(f"{path}: {where}{problem}"[:500]) from None
    except (ConfigurationError, RecursionError):
        raise
    except Exception as exc:  # PyYAML's constructors: a bad timestamp, a huge int, a bad base64...
        raise ConfigurationError(f"{path}: {type(exc).__name__}: {str(exc)[:300]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_yaml_depth(text: str, path: Path) -> None:
    """Refuse nesting past :data:`MAX_DEPTH` from the tokens, before PyYAML composes anything:
    its scanner's cost per token grows with the depth, so ``[[[[...`` of a few KB took seconds."""
    import yaml

    opening = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken)
    opening += (yaml.BlockMappingStartToken,)
    closing = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, opening):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigurationError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(token, closing):
            depth -= 1


def _yaml_children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_yaml_nodes(root: Any, path: Path) -> None:
    """Refuse a composed YAML document whose aliases would expand it past the budget, that
    refers to itself, or that nests past :data:`MAX_DEPTH`. Linear in the document's nodes."""
    distinct: set[int] = set()
    pending = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        if id(node) in distinct:
            continue
        if depth > MAX_DEPTH:
            raise ConfigurationError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        distinct.add(id(node))
        pending += [(child, depth + 1) for child in _yaml_children(node)]
    budget = len(distinct) + ALIAS_EXPANSION_BUDGET
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:  # each node's size with every alias expanded, bottom up, each node once
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _yaml_children(node))
            if size > budget:
                raise ConfigurationError(
                    f"{path}: YAML aliases expand the document past {budget} nodes (an alias bomb?)"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigurationError(f"{path}: a YAML alias refers to a node that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack += [(child, False) for child in _yaml_children(node) if id(child) not in sizes]


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

        return _ENV.sub(repl, value)
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_DEPTH:
        raise ConfigurationError(f"{where}: nested deeper than {MAX_DEPTH} levels (or refers to itself)")
    if isinstance(value, Mapping):
        return {k: _substitute(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute(v, where, depth + 1) for v in value]
    return value
