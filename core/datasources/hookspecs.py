"""The plugin contract: the hooks an extension implements, in one readable file.

An extension is any importable object (usually a module) with functions marked
``@datasources.hookimpl``. It is found through the entry-point group
``datasources.extensions`` (the entry point's name is the extension's name) or
registered in-process with ``Host.register_extension(obj, name=...)``.

Minimal extension, as an OHIF extension author would write it::

    from datasources import hookimpl

    @hookimpl
    def getDataSourcesModule():
        return [
            {
                "name": "mysource",
                "type": "webApi",
                # a "module:function" string keeps start-up cheap: the module is
                # imported only when a source of this kind is created
                "createDataSource": "my_extension.source:create_my_source",
            }
        ]

The source is then configured under the namespace
``<extension name>.dataSourcesModule.mysource``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .definitions import DataSourceDefinition
    from .interface import DataSource

PROJECT_NAME = "datasources"
ENTRY_POINT_GROUP = "datasources.extensions"
MODULE_TYPE = "dataSourcesModule"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def getDataSourcesModule() -> Sequence[DataSourceDefinition | Mapping[str, Any]]:
    """Return the data-source definitions this extension provides.

    Each is a :class:`~datasources.definitions.DataSourceDefinition` or a plain dict
    with the same keys: ``name``, ``type`` (``webApi``, ``jsonApi``, ``localApi``,
    ``mergeApi`` or ``other``) and ``createDataSource``, a factory called as
    ``createDataSource(configuration, host)`` (or with the configuration alone, if
    it takes one argument) that returns ``IWebApiDataSource.create(...)``. The factory
    must not do I/O; that is ``initialize``'s job. It may be given as a
    ``"module:function"`` string, imported on first use.
    """


@hookspec
def getDataSourceHelpers(
    source_name: str, namespace: str, data_source: DataSource
) -> Mapping[str, Callable[..., Any]] | None:
    """Contribute helper methods to a data source that has just been created.

    Called for every extension, for every source, right after the source's factory
    ran. Return a mapping of helper name to callable (or ``None`` to add nothing).
    Other code then reaches them as ``data_source.helpers.NAME(...)``. A helper may
    close over ``data_source`` to reach its backend::

        @hookimpl
        def getDataSourceHelpers(source_name, namespace, data_source):
            if namespace != "default.dataSourcesModule.dicomweb":
                return None
            def count_studies():
                return len(data_source.query.studies.search())
            return {"count_studies": count_studies}
    """
