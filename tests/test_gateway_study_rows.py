"""Study rows from the gateway carry what a worklist needs, whatever the source leaves out."""

from __future__ import annotations

import types
from typing import Any

from datasources import Host, IWebApiDataSource, Source, hookimpl
from datasources.gateway import create_app
from starlette.testclient import TestClient

STUDY = "1.2.826.0.1.3680043.10.1081.1"
SERIES = [
    {"StudyInstanceUID": STUDY, "SeriesInstanceUID": f"{STUDY}.{i}", "Modality": m, "NumberOfSeriesRelatedInstances": n}
    for i, (m, n) in enumerate([("CT", 2), ("SR", 1), ("CT", 3)], 1)
]


class Sparse(Source):
    """A source whose study rows have no modalities, no counts and an unknown time."""

    def search_studies(self, filters: Any = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        return [{"StudyInstanceUID": STUDY, "PatientName": {"Alphabetic": "DOE^J"}, "ModalitiesInStudy": None,
                 "StudyTime": None, "AccessionNumber": ""}]  # fmt: skip

    def search_series(self, study: str, filters: Any = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        return [dict(s) for s in SERIES] if study == STUDY else []


def client() -> TestClient:
    ext = types.ModuleType("sparse")

    def create(configuration: Any, host: Any = None) -> Any:
        return IWebApiDataSource.from_source(Sparse(configuration, host))

    ext.getDataSourcesModule = hookimpl(lambda: [{"name": "sparse", "type": "other", "createDataSource": create}])
    host = Host({"dataSources": []})
    host.register_extension(ext, name="sparse")
    host.add_data_source({"namespace": "sparse.dataSourcesModule.sparse", "sourceName": "s", "configuration": {}})
    return TestClient(create_app(host))


def test_modalities_and_counts_are_computed_from_the_series_and_unknowns_left_out() -> None:
    (row,) = client().get("/dicom-web/studies").json()
    assert row["00080061"] == {"vr": "CS", "Value": ["CT", "SR"]}  # from the series, in order, once each
    assert row["00201206"] == {"vr": "IS", "Value": [3]}
    assert row["00201208"] == {"vr": "IS", "Value": [6]}
    assert "00080030" not in row and "00080050" not in row  # StudyTime and AccessionNumber: not known
