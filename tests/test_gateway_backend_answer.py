"""A cold metadata answer made from the backend's own JSON, the store filled once it has left.

Against a real Orthanc: the answer is Orthanc's JSON with only its BulkDataURIs pointed at the
gateway (and they fetch the same bytes), it agrees with the answers made from the store, and the
store holds the study once the answer has left; nothing reads the store before the fill is done.
Against a scripted backend: JSON the store refuses is answered once, logged, and then meets the
store's typed error; JSON of the wrong shape is a 502 and nothing is stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

pytest.importorskip("starlette")

import requests
from datasources import Host
from datasources.gateway import backend_answer, create_app
from datasources.gateway.datasets import metadata_json
from datasources.gateway.state import Gateway
from datasources.naturalize import naturalize_many
from starlette.testclient import TestClient
from support.dimse_fixtures import *  # noqa: F403  (orthanc_pacs, with real compressed files)
from support.faultserver import FaultServer, Reply
from test_gateway_support import Served, served

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.10.543.1", "1.2.826.0.1.3680043.10.543.2", "1.2.826.0.1.3680043.10.543.3"


def dicomweb_host(url: str, **extra: Any) -> Host:
    configuration = {"qidoRoot": url, "wadoRoot": url, "requestOptions": {"retries": 0}, **extra}
    return Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
                                   "configuration": configuration}]})  # fmt: skip


def bulk_uris(dataset: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, str]:
    """Every BulkDataURI of a DICOM JSON dataset by its tag path (``00540016/0/00291011``)."""
    found: dict[str, str] = {}
    for tag, element in dataset.items():
        if "BulkDataURI" in element:
            found["/".join((*path, tag))] = element["BulkDataURI"]
        for index, item in enumerate(element.get("Value") or () if element.get("vr") == "SQ" else ()):
            found.update(bulk_uris(item, (*path, tag, str(index))))
    return found


def without_bulk_uris(dataset: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for tag, element in dataset.items():
        if "BulkDataURI" in element:
            element = {**element, "BulkDataURI": "..."}
        elif element.get("vr") == "SQ":
            element = {**element, "Value": [without_bulk_uris(item) for item in element.get("Value") or ()]}
        out[tag] = element
    return out


@pytest.fixture
def orthanc_gateway(orthanc_dataset: Any) -> Iterator[tuple[Any, Host, Served]]:
    host = dicomweb_host(orthanc_dataset.dicomweb_url)
    with served(create_app(host, metadata_ttl=3600)) as server:
        yield orthanc_dataset, host, server


@pytest.mark.orthanc
def test_the_cold_answer_is_the_backends_json_with_the_gateways_bulk_data_uris(
    orthanc_gateway: tuple[Any, Host, Served],
) -> None:
    data, host, server = orthanc_gateway
    root = f"{server.url}/pacs/dicom-web"
    by_sop = data.by_sop()
    counts = {uid: len(data.datasets_of(uid)) for uid in data.study_uids}
    study = max(counts, key=counts.__getitem__)  # the study with the most instances
    headers = {"Accept": "application/dicom+json"}
    direct = requests.get(f"{data.dicomweb_url}/studies/{study}/metadata", headers=headers, timeout=30).json()
    cold = requests.get(f"{root}/studies/{study}/metadata", headers=headers, timeout=30)
    assert cold.status_code == 200 and cold.headers["Content-Type"].startswith("application/dicom+json")
    answer = {d["00080018"]["Value"][0]: d for d in cold.json()}
    assert set(answer) == {d["00080018"]["Value"][0] for d in direct} and len(answer) > 1
    for dataset in direct:  # Orthanc's own values, element for element; only where bulk data lives changed
        sop = dataset["00080018"]["Value"][0]
        assert without_bulk_uris(answer[sop]) == without_bulk_uris(dataset), sop
        ours = bulk_uris(answer[sop])
        assert set(ours) == set(bulk_uris(dataset)) and ours, sop
        series = dataset["0020000E"]["Value"][0]
        for path, uri in ours.items():
            assert uri == f"{root}/studies/{study}/series/{series}/instances/{sop}/bulkdata/{path}"
        private = requests.get(ours["00291011"], headers={"Accept": "application/octet-stream"}, timeout=30)
        assert private.status_code == 200 and by_sop[sop][0x00291011].value in private.content
    # the store is filled once the answer has left: it agrees with the answer, element for element
    stored = host.metadata_store.get_study(study)
    instances = [i for s in stored["series"] for i in s["instances"]] if stored else []
    assert sorted(i["SOPInstanceUID"] for i in instances) == sorted(answer)
    from_store = orjson.loads(metadata_json(instances, root, study))
    assert naturalize_many(from_store) == naturalize_many(list(answer.values()))
    # made once per load: the warm answer is the same bytes; a series' answer is made from the store
    again = requests.get(f"{root}/studies/{study}/metadata", headers=headers, timeout=30)
    assert again.content == cold.content
    series_uid = next(iter(answer.values()))["0020000E"]["Value"][0]
    one = requests.get(f"{root}/studies/{study}/series/{series_uid}/metadata", headers=headers, timeout=30).json()
    wanted = [d for d in answer.values() if d["0020000E"]["Value"][0] == series_uid]
    by_uid = lambda rows: sorted(naturalize_many(rows), key=lambda i: i["SOPInstanceUID"])  # noqa: E731
    assert by_uid(one) == by_uid(wanted)


@pytest.mark.orthanc
def test_nothing_reads_the_store_before_the_fill_which_waits_for_the_answer(
    orthanc_dataset: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = dicomweb_host(orthanc_dataset.dicomweb_url)
    gateway = Gateway(host, metadata_ttl=3600)
    data_source = host.get_data_source("pacs")
    multi = orthanc_dataset.multiframe
    study, series, sop = multi.StudyInstanceUID, multi.SeriesInstanceUID, multi.SOPInstanceUID
    render = lambda instances: metadata_json(instances, "http://gw", study)  # noqa: E731

    def instance_in_a_thread() -> tuple[threading.Thread, list[Any]]:
        got: list[Any] = []
        reader = threading.Thread(target=lambda: got.append(gateway.instance("pacs", data_source, study, series, sop)))
        reader.start()
        return reader, got

    body, sent = gateway.metadata_answer("pacs", data_source, study, None, "http://gw", render)
    assert sent is not None and sop.encode() in body
    assert host.metadata_store.get_study(study) is None  # the fill waits for the answer to leave
    reader, got = instance_in_a_thread()
    reader.join(0.5)
    assert reader.is_alive() and not got  # and a request for the study waits for the fill
    sent()
    reader.join(30)
    assert got and got[0]["SOPInstanceUID"] == sop and got[0]["NumberOfFrames"] == multi.NumberOfFrames

    # an answer that never leaves (the request was cancelled): the fill goes ahead after SEND_WAIT
    monkeypatch.setattr(backend_answer, "SEND_WAIT", 0.3)
    again = Gateway(dicomweb_host(orthanc_dataset.dicomweb_url), metadata_ttl=3600)
    gateway, data_source = again, again.host.get_data_source("pacs")
    started = time.monotonic()
    _, never_sent = gateway.metadata_answer("pacs", data_source, study, None, "http://gw", render)
    assert never_sent is not None
    reader, got = instance_in_a_thread()
    reader.join(30)
    assert got and got[0]["SOPInstanceUID"] == sop and 0.3 <= time.monotonic() - started < 30


def scripted(fault_server: FaultServer, instance: dict[str, Any]) -> TestClient:
    row = {"0020000D": {"vr": "UI", "Value": [STUDY]}, "0020000E": {"vr": "UI", "Value": [SERIES]}}
    fault_server.script(f"/dicom-web/studies/{STUDY}/series", Reply.json([row]))
    fault_server.script(f"/dicom-web/studies/{STUDY}/series/{SERIES}/metadata", Reply.json([instance]))
    return TestClient(create_app(dicomweb_host(f"{fault_server.url}/dicom-web"), metadata_ttl=3600))


def test_json_the_store_refuses_is_answered_once_then_meets_the_typed_error(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {"00080018": {"vr": "UI", "Value": [SOP]}, "00280030": {"vr": "DS", "Value": [{"not": "a number"}]}}
    client = scripted(fault_server, bad)
    url = f"/pacs/dicom-web/studies/{STUDY}/metadata"
    with caplog.at_level("WARNING", logger="datasources.gateway"):
        first = client.get(url)
        assert first.status_code == 200 and first.json()[0]["00280030"] == bad["00280030"]  # the backend's word
        then = client.get(url)  # waits for the fill, which failed: the store's path, and its error
    assert then.status_code == 502 and then.json()["type"] == "MalformedResponseError"
    assert "-> 502: MalformedResponseError: dataset 0: not a DS number" in caplog.text  # the operator's log
    assert f"study {STUDY} from pacs was answered from the backend's JSON, which the store refused" in caplog.text
    assert client.app.state.gateway.host.metadata_store.get_study(STUDY) is None  # type: ignore[attr-defined]
    assert len(fault_server.requests_to(f"/dicom-web/studies/{STUDY}/series/{SERIES}/metadata")) == 2


@pytest.mark.parametrize(
    "instance, message",
    [
        ({"00080018": {"vr": "UI", "Value": [SOP]}, "00100010": 7}, "element 00100010 is not a JSON object"),
        ({"00080018": {"vr": "UI", "Value": [SOP]}, "00081115": {"vr": "SQ", "Value": [1]}}, "an item of sequence"),
        ({"00100020": {"vr": "LO", "Value": ["P1"]}}, "has no SOPInstanceUID"),
    ],
)
def test_json_of_the_wrong_shape_is_a_502_and_nothing_is_stored(
    fault_server: FaultServer, instance: dict[str, Any], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = scripted(fault_server, instance)
    with caplog.at_level("ERROR", logger="datasources.gateway"):
        answer = client.get(f"/pacs/dicom-web/studies/{STUDY}/metadata")
    assert answer.status_code == 502 and answer.json()["type"] == "MalformedResponseError"
    assert message in caplog.text  # the operator's log names it; the client is told only the type
    assert client.app.state.gateway.host.metadata_store.get_study(STUDY) is None  # type: ignore[attr-defined]


def test_a_lazy_source_answers_from_the_store(fault_server: FaultServer) -> None:
    instance = {"00080018": {"vr": "UI", "Value": [SOP]}, "00100010": {"vr": "PN", "Value": [{"Alphabetic": "A^B"}]}}
    row = {"0020000D": {"vr": "UI", "Value": [STUDY]}, "0020000E": {"vr": "UI", "Value": [SERIES]}}
    fault_server.script(f"/dicom-web/studies/{STUDY}/series", Reply.json([row]))
    fault_server.script(f"/dicom-web/studies/{STUDY}/series/{SERIES}/metadata", Reply.json([instance]))
    host = dicomweb_host(f"{fault_server.url}/dicom-web", enableStudyLazyLoad=True)
    assert host.get_data_source("pacs").retrieve.series.metadata_json(STUDY) is None
    answer = TestClient(create_app(host)).get(f"/pacs/dicom-web/studies/{STUDY}/metadata").json()
    assert answer[0]["00100010"] == instance["00100010"] and answer[0]["0020000D"]["Value"] == [STUDY]


@pytest.mark.orthanc
def test_metadata_json_stores_nothing_until_fill_which_stores_what_metadata_does(orthanc_dataset: Any) -> None:
    study = max(orthanc_dataset.study_uids, key=lambda uid: len(orthanc_dataset.datasets_of(uid)))
    json_host, plain_host = dicomweb_host(orthanc_dataset.dicomweb_url), dicomweb_host(orthanc_dataset.dicomweb_url)
    fetched = json_host.get_data_source("pacs").retrieve.series.metadata_json(study)
    assert fetched is not None and json_host.metadata_store.get_study(study) is None
    assert sorted(d["00080018"]["Value"][0] for d in fetched.datasets) == sorted(
        ds.SOPInstanceUID for ds in orthanc_dataset.datasets_of(study)
    )
    summaries = fetched.fill()
    assert summaries == plain_host.get_data_source("pacs").retrieve.series.metadata(study)
    assert json_host.metadata_store.get_study(study) == plain_host.metadata_store.get_study(study)
    # asking the source again afterwards gives the same answer (the fill counts as its retrieve)
    assert json_host.get_data_source("pacs").retrieve.series.metadata(study) == summaries


@pytest.mark.orthanc
def test_real_compressed_files_answered_cold_then_their_frames_from_the_filled_store(orthanc_pacs: Any) -> None:
    """pydicom's JPEG, JPEG 2000, JPEG-LS, RLE and deflated files in Orthanc: the cold answer is
    Orthanc's JSON, and the frames read after it (from the store the answer filled) are the files'."""
    from dicomweb_client.api import DICOMwebClient
    from test_dimse_gateway import stored_frames

    data = orthanc_pacs
    study = str(data.compressed[0].StudyInstanceUID)
    host = dicomweb_host(data.server.dicomweb_url)
    with served(create_app(host, metadata_ttl=3600)) as server:
        root = f"{server.url}/pacs/dicom-web"
        headers = {"Accept": "application/dicom+json"}
        direct = requests.get(f"{data.server.dicomweb_url}/studies/{study}/metadata", headers=headers, timeout=30)
        cold = requests.get(f"{root}/studies/{study}/metadata", headers=headers, timeout=30).json()
        want = {d["00080018"]["Value"][0]: without_bulk_uris(d) for d in direct.json()}
        assert {d["00080018"]["Value"][0]: without_bulk_uris(d) for d in cold} == want
        ours, theirs = DICOMwebClient(root), DICOMwebClient(data.server.dicomweb_url)
        compared = 0
        for original in data.compressed:
            ids = (study, str(original.SeriesInstanceUID), str(original.SOPInstanceUID))
            accept = (("application/octet-stream", "*"),)
            try:
                theirs.retrieve_instance_frames(*ids, [1], media_types=accept)
            except requests.HTTPError:
                continue  # Orthanc 1.10 cannot serve some syntaxes: nothing to compare through it
            got = ours.retrieve_instance_frames(*ids, [1], media_types=accept)
            assert [bytes(f) for f in got] == stored_frames(original, [1]), original.SeriesDescription
            compared += 1
        assert compared >= len(data.compressed) - 2 and compared
        stored = host.metadata_store.get_study(study)
        assert stored is not None and sum(len(s["instances"]) for s in stored["series"]) == len(data.compressed)
