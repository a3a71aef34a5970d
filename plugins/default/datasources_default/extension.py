"""The entry point of the default extension: it lists its sources and imports none of them.

Each factory is a ``"module:function"`` string, so ``requests`` or ``pydicom`` are only
imported when a source of that kind is created.
"""

from __future__ import annotations

from typing import Any

from datasources import hookimpl


@hookimpl
def getDataSourcesModule() -> list[dict[str, Any]]:
    return [
        {"name": "dicomweb", "type": "webApi", "createDataSource": "datasources_default.dicomweb:create_dicomweb_api"},
        {
            "name": "dicomjson",
            "type": "jsonApi",
            "createDataSource": "datasources_default.dicomjson:create_dicomjson_api",
        },
        {
            "name": "dicomlocal",
            "type": "localApi",
            "createDataSource": "datasources_default.dicomlocal:create_dicomlocal_api",
        },
        {"name": "dimse", "type": "webApi", "createDataSource": "datasources_default.dimse:create_dimse_api"},
        {"name": "merge", "type": "mergeApi", "createDataSource": "datasources_default.merge:create_merge_api"},
    ]
