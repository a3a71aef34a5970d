"""datasources: a plugin host for medical-imaging data sources, on OHIF's DataSource contract.

Importing this package is cheap (extensions import it to get :data:`hookimpl`); the
host and everything else load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

__all__ = [
    "DataSource",
    "DataSourceDefinition",
    "DicomMetadataStore",
    "Host",
    "IWebApiDataSource",
    "Source",
    "__version__",
    "hookimpl",
    "hookspec",
    "not_supported",
]

_LAZY = {
    "Host": "host",
    "DataSource": "interface",
    "IWebApiDataSource": "interface",
    "not_supported": "interface",
    "Source": "source",
    "DataSourceDefinition": "definitions",
    "DicomMetadataStore": "metadata_store",
}

if TYPE_CHECKING:
    from .definitions import DataSourceDefinition
    from .host import Host
    from .interface import DataSource, IWebApiDataSource, not_supported
    from .metadata_store import DicomMetadataStore
    from .source import Source


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'datasources' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
