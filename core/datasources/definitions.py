"""What an extension's ``getDataSourcesModule`` returns: data-source definitions.

A definition names a *kind* of data source and how to make one. The factory may be
a callable or a ``"package.module:function"`` string, imported only when a source of
that kind is first created (fsspec's lazy registry is the model), so that listing
extensions never imports a source's heavy dependencies.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import ExtensionLoadError
from .records import Record

if TYPE_CHECKING:
    from .interface import DataSource

__all__ = ["DATA_SOURCE_TYPES", "DataSourceDefinition", "coerce_definition"]

DATA_SOURCE_TYPES = ("webApi", "jsonApi", "localApi", "mergeApi", "other")

Factory = Callable[..., "DataSource"]


def _check_factory(value: Any) -> None:
    if isinstance(value, str):
        module, sep, attr = value.partition(":")
        if not (module and sep and attr):
            raise ValueError(f"createDataSource {value!r} must be a callable or a 'module:function' string")
    elif not callable(value):
        raise TypeError(f"createDataSource must be callable, got {type(value).__name__}")


def _check_type(value: Any) -> None:
    if value not in DATA_SOURCE_TYPES:
        raise ValueError(f"type {value!r} is not one of {', '.join(DATA_SOURCE_TYPES)}")


def _check_name(value: Any) -> None:
    if not isinstance(value, str) or not value or "." in value:
        raise ValueError(f"name must be a non-empty string without dots, got {value!r}")


# Value classes on the start path are frozen Records, neither attrs nor dataclasses: importing
# attrs costs about 8 ms, and dataclasses compile their methods at import (records.py).
class DataSourceDefinition(Record):
    """One kind of data source an extension offers (OHIF's ``DataSourceDefinition``)."""

    _fields = ("name", "type", "createDataSource")

    name: str
    type: str
    createDataSource: Factory | str
    _resolved: list[Factory]  # the imported factory, once (not a field: no part of ==, hash or repr)

    def __init__(self, name: str, type: str, createDataSource: Factory | str) -> None:
        _check_name(name)
        _check_type(type)
        _check_factory(createDataSource)
        self._set(name=name, type=type, createDataSource=createDataSource, _resolved=[])

    def factory(self) -> Factory:
        """The factory as a callable, importing it on first use if it was given as a string."""
        if self._resolved:
            return self._resolved[0]
        target = self.createDataSource
        if isinstance(target, str):
            module_name, _, attr_path = target.partition(":")
            obj: Any = importlib.import_module(module_name)
            for part in attr_path.split("."):
                obj = getattr(obj, part)
            if not callable(obj):
                raise TypeError(f"{target} is not callable")
            target = obj
        self._resolved.append(target)
        return target

    def create(self, configuration: Mapping[str, Any], host: Any) -> DataSource:
        """Call the factory as ``(configuration, host)``, or ``(configuration)`` if it takes one argument."""
        factory = self.factory()
        if _accepts_two(factory):
            return factory(configuration, host)
        return factory(configuration)


def _accepts_two(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: give them both
        return True
    positional = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


_REQUIRED_KEYS = ("name", "type", "createDataSource")


def coerce_definition(obj: Any, extension: str, version: str | None = None) -> DataSourceDefinition:
    """Turn what a hook returned (a definition or an OHIF-style dict) into a validated definition."""
    if isinstance(obj, DataSourceDefinition):
        return obj
    if isinstance(obj, Mapping):
        missing = [k for k in _REQUIRED_KEYS if k not in obj]
        if missing:
            raise ExtensionLoadError(
                extension, f"data-source definition {dict(obj)!r} lacks {', '.join(missing)}", version=version
            )
        unknown = sorted(set(obj) - set(_REQUIRED_KEYS))
        if unknown:
            raise ExtensionLoadError(
                extension, f"data-source definition {obj.get('name')!r} has unknown keys {unknown}", version=version
            )
        try:
            return DataSourceDefinition(obj["name"], obj["type"], obj["createDataSource"])
        except (TypeError, ValueError) as exc:
            raise ExtensionLoadError(
                extension, f"data-source definition {obj.get('name')!r}: {exc}", version=version
            ) from exc
    raise ExtensionLoadError(
        extension,
        f"getDataSourcesModule returned a {type(obj).__name__}, expected a DataSourceDefinition or a dict",
        version=version,
    )
