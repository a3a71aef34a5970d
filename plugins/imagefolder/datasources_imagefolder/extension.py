"""The entry point: one data-source kind, its implementation imported only when a source is created."""

from __future__ import annotations

from typing import Any

from datasources import hookimpl


@hookimpl
def getDataSourcesModule() -> list[dict[str, Any]]:
    return [
        {
            "name": "imagefolder",
            "type": "localApi",
            "createDataSource": "datasources_imagefolder.source:create_imagefolder_api",
        }
    ]
