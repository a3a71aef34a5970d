"""The merge source's configuration: OHIF's ``seriesMerge`` block, checked.

The shape is checked in the factory (no I/O, no look-ups); whether the members exist is
checked in ``initialize``, against the host, because members may be configured after the
merge source or added at run time.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datasources.errors import ConfigurationError

__all__ = ["MergeConfig", "check_members"]

KNOWN_KEYS = frozenset({"name", "friendlyName", "seriesMerge", "maxWorkers"})
_SERIES_MERGE_KEYS = frozenset({"dataSourceNames", "defaultDataSourceName"})


@dataclass(frozen=True)
class MergeConfig:
    """``{seriesMerge: {dataSourceNames, defaultDataSourceName}, friendlyName, maxWorkers}``."""

    data_source_names: tuple[str, ...]
    default_data_source_name: str
    friendly_name: str | None = None
    name: str | None = None
    max_workers: int = 8

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any]) -> MergeConfig:
        if not isinstance(configuration, Mapping):
            raise ConfigurationError(f"merge: the configuration must be a mapping, not {type(configuration).__name__}")
        unknown = sorted(set(configuration) - KNOWN_KEYS)
        if unknown:
            warnings.warn(f"merge: unknown configuration keys {unknown}", stacklevel=4)
        block = configuration.get("seriesMerge")
        if not isinstance(block, Mapping):
            raise ConfigurationError(
                "merge: configuration.seriesMerge is required: "
                '{"dataSourceNames": ["a", "b"], "defaultDataSourceName": "a"}'
            )
        extra = sorted(set(block) - _SERIES_MERGE_KEYS)
        if extra:
            warnings.warn(f"merge: unknown seriesMerge keys {extra}", stacklevel=4)
        names = block.get("dataSourceNames")
        if not isinstance(names, list | tuple) or not names:
            raise ConfigurationError("merge: seriesMerge.dataSourceNames must be a non-empty list of source names")
        bad = [n for n in names if not isinstance(n, str) or not n]
        if bad:
            raise ConfigurationError(f"merge: seriesMerge.dataSourceNames holds non-names: {bad!r}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(f"merge: seriesMerge.dataSourceNames lists {duplicates} more than once")
        default = block.get("defaultDataSourceName")
        if default is None:
            default = names[0]
        if not isinstance(default, str) or default not in names:
            raise ConfigurationError(
                f"merge: seriesMerge.defaultDataSourceName {default!r} is not one of dataSourceNames {list(names)}"
            )
        for key in ("friendlyName", "name"):
            if configuration.get(key) is not None and not isinstance(configuration[key], str):
                raise ConfigurationError(f"merge: {key} must be a string")
        workers = configuration.get("maxWorkers", 8)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigurationError(f"merge: maxWorkers must be a whole number of at least 1, not {workers!r}")
        return cls(
            data_source_names=tuple(names),
            default_data_source_name=default,
            friendly_name=configuration.get("friendlyName"),
            name=configuration.get("name"),
            max_workers=workers,
        )

    def public(self) -> dict[str, Any]:
        """The configuration as OHIF writes it (no secrets live here)."""
        out: dict[str, Any] = {
            "seriesMerge": {
                "dataSourceNames": list(self.data_source_names),
                "defaultDataSourceName": self.default_data_source_name,
            }
        }
        if self.friendly_name is not None:
            out["friendlyName"] = self.friendly_name
        if self.name is not None:
            out["name"] = self.name
        return out


def check_members(own_name: str | None, config: MergeConfig, host: Any) -> None:
    """Every member must be a configured source; no merge may reach itself through its members."""
    known = list(host.source_names)
    if own_name is not None and own_name in config.data_source_names:
        raise ConfigurationError(
            f"merge source {own_name!r} lists itself in seriesMerge.dataSourceNames; a merge cannot include itself"
        )
    unknown = [n for n in config.data_source_names if n not in known]
    if unknown:
        others = sorted(n for n in known if n != own_name)
        raise ConfigurationError(
            f"merge source {own_name!r}: seriesMerge.dataSourceNames names unknown source(s) "
            f"{', '.join(repr(n) for n in unknown)}; configured sources: {', '.join(repr(n) for n in others) or 'none'}"
        )
    if own_name is None:
        return
    # a member that is itself a merge must not lead back here (a -> b -> a would recurse forever)

    def visit(name: str, chain: tuple[str, ...]) -> None:
        try:
            entry = host.get_data_source_definition(name)
        except Exception:  # an unknown nested member is that merge's own problem, reported at its initialize
            return
        nested = entry.configuration.get("seriesMerge") if isinstance(entry.configuration, Mapping) else None
        if not isinstance(nested, Mapping):
            return
        here = (*chain, name)
        for member in nested.get("dataSourceNames") or ():
            if member == own_name:
                cycle = " -> ".join(repr(n) for n in (*here, member))
                raise ConfigurationError(f"merge source {own_name!r} includes itself through {cycle}")
            if isinstance(member, str) and member not in here:
                visit(member, here)

    for member in config.data_source_names:
        visit(member, (own_name,))
