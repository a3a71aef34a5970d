"""Lazy series loading when one series fails: the failure is recorded on that series, typed and
retrievable, no instances (and no ``instancesAdded``) for it, the study not marked loaded, and
the next request loads it again. The backend is a real HTTP server on loopback."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from datasources import Host
from datasources.errors import HTTPError
from support.faultserver import FaultServer, Reply

STUDY = "1.2.3"
JSON = {"Content-Type": "application/dicom+json"}
GOOD, BAD = "1.2.3.1", "1.2.3.2"


def instance(series: str, sop: str) -> dict[str, Any]:
    return {
        "0020000D": {"vr": "UI", "Value": [STUDY]},
        "0020000E": {"vr": "UI", "Value": [series]},
        "00080018": {"vr": "UI", "Value": [sop]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
    }


def lazy_source(url: str) -> tuple[Host, Any]:
    configuration = {
        "wadoRoot": f"{url}/dicom-web",
        "enableStudyLazyLoad": True,
        "requestOptions": {"retries": 0, "backoff": 0},
    }
    host = Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "s",
                          "configuration": configuration}]}
    )  # fmt: skip
    return host, host.get_data_source("s")


def script(fault_server: FaultServer, bad: Reply) -> None:
    series = [{"0020000E": {"vr": "UI", "Value": [s]}, "00200011": {"vr": "IS", "Value": [n]}}
              for n, s in enumerate([GOOD, BAD], start=1)]  # fmt: skip
    fault_server.script(f"/dicom-web/studies/{STUDY}/series", Reply(200, orjson.dumps(series), JSON))
    fault_server.script(
        f"/dicom-web/studies/{STUDY}/series/{GOOD}/metadata", Reply(200, orjson.dumps([instance(GOOD, "9")]), JSON)
    )
    fault_server.script(f"/dicom-web/studies/{STUDY}/series/{BAD}/metadata", bad)


def test_a_failed_series_is_recorded_on_it_and_retried(fault_server: FaultServer) -> None:
    script(fault_server, Reply(500, b"disk on fire"))
    host, ds = lazy_source(fault_server.url)
    store = host.metadata_store
    added: list[str] = []
    store.subscribe(store.EVENTS.INSTANCES_ADDED, lambda event: added.append(event["SeriesInstanceUID"]))
    with pytest.raises(HTTPError, match="500"):
        ds.retrieve.series.metadata(STUDY)
    failure = ds.helpers.series_load_error(STUDY, BAD)
    assert isinstance(failure, HTTPError) and failure.status == 500
    assert ds.helpers.series_load_error(STUDY, GOOD) is None
    assert store.get_series(STUDY, BAD)["loadError"]["type"] == "HTTPError"
    assert "loadError" not in store.get_series(STUDY, GOOD)
    assert store.get_series(STUDY, BAD)["instances"] == []
    assert added == [GOOD]  # no instancesAdded for the failed series
    assert store.get_study(STUDY).get("isLoaded") is False
    # the backend recovers: the next request loads the failed series, and clears its error
    script(fault_server, Reply(200, orjson.dumps([instance(BAD, "8")]), JSON))
    assert set(ds.retrieve.series.metadata(STUDY)) == {GOOD, BAD}
    assert ds.helpers.series_load_error(STUDY, BAD) is None
    assert "loadError" not in store.get_series(STUDY, BAD)
    assert [i["SOPInstanceUID"] for i in store.get_series(STUDY, BAD)["instances"]] == ["8"]
    assert store.get_study(STUDY)["isLoaded"] is True
    assert BAD in added


def test_tasks_record_the_failure_of_the_series_they_load(fault_server: FaultServer) -> None:
    script(fault_server, Reply(503, b"busy"))
    host, ds = lazy_source(fault_server.url)
    tasks = {t.metadata["SeriesInstanceUID"]: t for t in ds.retrieve.series.metadata(STUDY, return_tasks=True)}
    assert tasks[GOOD].result(10)["SeriesInstanceUID"] == GOOD
    with pytest.raises(HTTPError):
        tasks[BAD].result(10)
    assert isinstance(ds.helpers.series_load_error(STUDY, BAD), HTTPError)
    assert host.metadata_store.get_series(STUDY, BAD)["loadError"]["message"]
