"""A test extension: an in-memory source, and a helper contributed to every dicomjson source."""

from __future__ import annotations

from typing import Any

from datasources import hookimpl

#: Set to True by the source module when it is imported: proves lazy factory import.
SOURCE_IMPORTED = False


@hookimpl
def getDataSourcesModule() -> list[dict[str, Any]]:
    return [{"name": "memory", "type": "other", "createDataSource": "datasources_testext.source:create_memory_api"}]


@hookimpl
def getDataSourceHelpers(source_name: str, namespace: str, data_source: Any) -> dict[str, Any] | None:
    if namespace != "default.dataSourcesModule.dicomjson":
        return None

    def count_studies() -> int:
        return len(data_source.query.studies.search())

    return {"count_studies": count_studies}
