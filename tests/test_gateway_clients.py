"""Real clients against the gateway served by a real uvicorn on 127.0.0.1.

dicomweb-client's ``DICOMwebClient`` (written by nobody on this team) searches, reads metadata,
frames and bulk data, and stores; this project's own ``dicomweb`` source pointed at the gateway
round-trips the bundled sample and, through a gateway in front of a real Orthanc, Orthanc's data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

pytest.importorskip("starlette")
dicomweb_client = pytest.importorskip("dicomweb_client")

import requests  # noqa: E402
from datasources import Host  # noqa: E402
from datasources.gateway import create_app  # noqa: E402
from dicomweb_client.api import DICOMwebClient  # noqa: E402
from support.dicomgen import StudySpec, make_study  # noqa: E402
from test_gateway_support import Served, served  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INSTANCES = REPO / "plugins/default/datasources_default/dicomjson/sample/instances"
LEE_CT = "2.25.149445395880599934171435059992354054150"
TOKEN = "clients-token-0b9e77d4"
# what a relay may rewrite: where things are, and how the client found them
VOLATILE = {"imageId", "wadoRoot", "wadoUri", "url", "RetrieveURL"}


def sample_file(sop: str) -> pydicom.FileDataset:
    return pydicom.dcmread(INSTANCES / f"{sop}.dcm")


def dicomweb_host(url: str, name: str = "gw", **extra: Any) -> Host:
    configuration = {
        "name": name,
        "qidoRoot": url,
        "wadoRoot": url,
        "imageRendering": "wadors",
        "requestOptions": {"retries": 0, **extra.pop("requestOptions", {})},
        **extra,
    }
    return Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": name,
                                   "configuration": configuration}]})  # fmt: skip


def comparable(instance: dict[str, Any]) -> dict[str, Any]:
    """An instance without what a relay rewrites: URLs, and BulkDataURI values (kept as markers)."""
    out = {}
    for key, value in instance.items():
        if key in VOLATILE or key.startswith("_"):
            continue
        if isinstance(value, dict) and "BulkDataURI" in value:
            value = {"BulkDataURI": "..."}
        out[key] = value
    return out


@pytest.fixture(scope="module")
def sample_gateway() -> Iterator[tuple[Host, Served]]:
    host = Host()
    with served(create_app(host, token=TOKEN)) as server:
        yield host, server


@pytest.fixture(scope="module")
def client(sample_gateway: tuple[Host, Served]) -> DICOMwebClient:
    return DICOMwebClient(f"{sample_gateway[1].url}/dicom-web", headers={"Authorization": f"Bearer {TOKEN}"})


# -- dicomweb-client -------------------------------------------------------------------------


def test_dicomweb_client_searches(client: DICOMwebClient, sample_gateway: tuple[Host, Served]) -> None:
    source = sample_gateway[0].get_data_source()
    studies = client.search_for_studies()
    assert [s["0020000D"]["Value"][0] for s in studies] == [
        r["StudyInstanceUID"] for r in source.query.studies.search()
    ]
    # dicomweb-client percent-encodes (quote_plus): '^' as %5E, ' ' as '+', 'Ü' as UTF-8 bytes
    lee = client.search_for_studies(search_filters={"PatientName": "LEE^ANNA^K"})
    assert {s["00100020"]["Value"][0] for s in lee} == {"PAT0001"} and len(lee) == 2
    muller = client.search_for_studies(search_filters={"PatientName": "MÜLLER*"})
    assert [s["00100010"]["Value"][0]["Alphabetic"] for s in muller] == ["MÜLLER^KLAUS"]
    chest = client.search_for_studies(search_filters={"StudyDescription": "CT CHEST*"}, fields=["StudyDescription"])
    assert [s["0020000D"]["Value"][0] for s in chest] == [LEE_CT]
    assert len(client.search_for_studies(limit=2, offset=1)) == 2
    assert len(client.search_for_studies(get_remaining=True)) == 6
    series = client.search_for_series(LEE_CT)
    assert len(series) == 2 and {s["00080060"]["Value"][0] for s in series} == {"CT"}
    mr = client.search_for_series(search_filters={"Modality": "MR"})
    assert len(mr) == 6
    instances = client.search_for_instances(LEE_CT, series[0]["0020000E"]["Value"][0])
    assert len(instances) == 4 and all("00080018" in i for i in instances)
    assert len(client.search_for_instances(search_filters={"PatientID": "PAT0002"})) == 4
    with pytest.raises(requests.HTTPError) as info:
        client.search_for_studies(search_filters={"patientname": "x"})
    assert info.value.response.status_code == 400


def test_dicomweb_client_metadata_frames_and_bulk_data(client: DICOMwebClient) -> None:
    metadata = client.retrieve_study_metadata(LEE_CT)
    assert len(metadata) == 7
    for item in metadata:
        loaded = pydicom.Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
        reference = sample_file(loaded.SOPInstanceUID)
        for keyword in ("PatientName", "PatientID", "StudyDate", "Rows", "Columns", "PixelSpacing", "WindowCenter",
                        "ImagePositionPatient", "SeriesNumber", "InstanceNumber", "RescaleIntercept"):  # fmt: skip
            assert loaded[keyword].value == reference[keyword].value, keyword
            assert loaded[keyword].VR == reference[keyword].VR, keyword
    first = pydicom.Dataset.from_json(metadata[0], bulk_data_uri_handler=lambda *_: b"")
    study, series, sop = first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID
    assert len(client.retrieve_series_metadata(study, series)) == len(
        [m for m in metadata if m["0020000E"]["Value"][0] == series]
    )
    assert client.retrieve_instance_metadata(study, series, sop)["00080018"]["Value"] == [sop]
    pixels = sample_file(sop).PixelData
    assert client.retrieve_instance_frames(study, series, sop, [1]) == [pixels]
    explicit = client.retrieve_instance_frames(
        study, series, sop, [1], media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),)
    )
    assert explicit == [pixels]
    uri = next(m for m in metadata if m["00080018"]["Value"] == [sop])["7FE00010"]["BulkDataURI"]
    assert client.retrieve_bulkdata(uri) == [pixels]
    with pytest.raises(requests.HTTPError) as info:
        client.retrieve_instance_frames(study, series, sop, [2])
    assert info.value.response.status_code == 404


def test_dicomweb_client_needs_the_token(sample_gateway: tuple[Host, Served]) -> None:
    anonymous = DICOMwebClient(f"{sample_gateway[1].url}/dicom-web")
    with pytest.raises(requests.HTTPError) as info:
        anonymous.search_for_studies()
    assert info.value.response.status_code == 401
    wrong = DICOMwebClient(f"{sample_gateway[1].url}/dicom-web", headers={"Authorization": "Bearer nope"})
    with pytest.raises(requests.HTTPError):
        wrong.search_for_studies()


def test_dicomweb_client_stores_into_a_local_folder(tmp_path: Path) -> None:
    configuration = {"root": str(tmp_path / "root"), "cache": str(tmp_path / "i.db")}
    host = Host({"dataSources": [{"namespace": "default.dataSourcesModule.dicomlocal", "sourceName": "local",
                                   "configuration": configuration}]})  # fmt: skip
    (tmp_path / "root").mkdir()
    datasets = make_study(StudySpec("gw-client-stow", patient_name="STOW^CLIENT", n_series=2, n_instances=2))
    with served(create_app(host)) as server:
        client = DICOMwebClient(f"{server.url}/local/dicom-web")
        answer = client.store_instances(datasets)
        assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [
            ds.SOPInstanceUID for ds in datasets
        ]
        assert "FailedSOPSequence" not in answer
        found = client.search_for_instances(datasets[0].StudyInstanceUID)
        assert sorted(i["00080018"]["Value"][0] for i in found) == sorted(ds.SOPInstanceUID for ds in datasets)
        frames = client.retrieve_instance_frames(
            datasets[1].StudyInstanceUID, datasets[1].SeriesInstanceUID, datasets[1].SOPInstanceUID, [1]
        )
        assert frames == [datasets[1].PixelData]


# -- this project's dicomweb source against the gateway ---------------------------------------


@pytest.mark.parametrize("encoding", ["minimal", "percent"])
def test_dicomweb_source_round_trips_the_sample(sample_gateway: tuple[Host, Served], encoding: str) -> None:
    host, server = sample_gateway
    original = host.get_data_source()
    relay_host = dicomweb_host(
        f"{server.url}/dicom-web", requestOptions={"auth": {"token": TOKEN}, "queryEncoding": encoding}
    )
    relay = relay_host.get_data_source()
    queries = [{}, {"PatientName": "MÜLLER*"}, {"PatientName": "LEE^ANNA^K"}, {"StudyDescription": "CT CHEST*"},
               {"ModalitiesInStudy": ["CT", "MR"]}, {"StudyDate": "20200101-"}, {"limit": 2, "offset": 3}]  # fmt: skip
    for query in queries:
        expected = [r["StudyInstanceUID"] for r in original.query.studies.search(query)]
        assert [r["StudyInstanceUID"] for r in relay.query.studies.search(query)] == expected, query
    for study in [r["StudyInstanceUID"] for r in original.query.studies.search()]:
        relay.retrieve.series.metadata(study)
        original.retrieve.series.metadata(study)
        got = relay_host.metadata_store.get_study(study)
        want = host.metadata_store.get_study(study)
        # the dicomweb source orders series as OHIF does (by SeriesNumber); dicomjson keeps the file's order
        assert sorted(s["SeriesInstanceUID"] for s in got["series"]) == sorted(
            s["SeriesInstanceUID"] for s in want["series"]
        )
        wanted = {s["SeriesInstanceUID"]: s for s in want["series"]}
        for got_series in got["series"]:
            by_sop = {i["SOPInstanceUID"]: i for i in wanted[got_series["SeriesInstanceUID"]]["instances"]}
            assert len(got_series["instances"]) == len(by_sop)
            for instance in got_series["instances"]:
                expected = comparable(by_sop[instance["SOPInstanceUID"]])
                # the sample's study-level extras (Modalities, NumInstances) are not DICOM: they stay home
                expected = {k: v for k, v in expected.items() if k not in ("Modalities", "NumInstances")}
                assert comparable(instance) == expected
                frames = relay.retrieve.frames(study, instance["SeriesInstanceUID"], instance["SOPInstanceUID"], [1])
                assert frames == [sample_file(instance["SOPInstanceUID"]).PixelData]
    instance = relay_host.metadata_store.get_study(LEE_CT)["series"][0]["instances"][0]
    assert (
        relay.retrieve.bulk_data_uri(instance["PixelData"]["BulkDataURI"])
        == sample_file(instance["SOPInstanceUID"]).PixelData
    )
    assert all(h.authorized for h in server.requests if "/dicom-web/" in h.path and h.status == 200)


# -- a gateway in front of Orthanc, and the dicomweb source in front of the gateway --------------


@pytest.fixture
def orthanc_chain(orthanc_dataset: Any) -> Iterator[tuple[Any, Host, Host, Served]]:
    """(the data, a host reading Orthanc directly, a host reading Orthanc through the gateway, the gateway)."""
    direct = dicomweb_host(orthanc_dataset.dicomweb_url, "orthanc")
    gateway_host = dicomweb_host(orthanc_dataset.dicomweb_url, "orthanc")
    with served(create_app(gateway_host, token=TOKEN, metadata_ttl=0)) as server:
        relay = dicomweb_host(
            f"{server.url}/orthanc/dicom-web",
            "relay",
            requestOptions={"auth": {"token": TOKEN}, "queryEncoding": "percent"},
        )
        yield orthanc_dataset, direct, relay, server


@pytest.mark.orthanc
def test_orthanc_data_round_trips_through_the_gateway(orthanc_chain: tuple[Any, Host, Host, Served]) -> None:
    data, direct_host, relay_host, _ = orthanc_chain
    direct, relay = direct_host.get_data_source(), relay_host.get_data_source()
    for query in ({}, {"PatientName": "LEE*"}, {"PatientID": "PAT0002"}, {"StudyDate": "20200101-20231231"},
                  {"ModalitiesInStudy": "MR"}, {"AccessionNumber": "ACC1001"}):  # fmt: skip
        want = [comparable(r) for r in direct.query.studies.search(query)]
        assert [comparable(r) for r in relay.query.studies.search(query)] == want, query
    by_sop = data.by_sop()
    for study in data.study_uids:
        direct.retrieve.series.metadata(study)
        relay.retrieve.series.metadata(study)
        want = {i["SOPInstanceUID"]: i for s in direct_host.metadata_store.get_study(study)["series"]
                for i in s["instances"]}  # fmt: skip
        got = {i["SOPInstanceUID"]: i for s in relay_host.metadata_store.get_study(study)["series"]
               for i in s["instances"]}  # fmt: skip
        assert set(got) == set(want) and got
        for sop, instance in got.items():
            assert comparable(instance) == comparable(want[sop]), sop
            private = instance["00291011"]["BulkDataURI"]
            assert relay.retrieve.bulk_data_uri(private) == by_sop[sop][0x00291011].value
    multi = data.multiframe
    frames = relay.retrieve.frames(multi.StudyInstanceUID, multi.SeriesInstanceUID, multi.SOPInstanceUID, [2, 4])
    size = multi.Rows * multi.Columns * 2
    assert frames == [multi.PixelData[size : 2 * size], multi.PixelData[3 * size : 4 * size]]


@pytest.mark.orthanc
def test_dicomweb_client_through_the_gateway_to_orthanc(orthanc_chain: tuple[Any, Host, Host, Served]) -> None:
    data, _, _, server = orthanc_chain
    client = DICOMwebClient(f"{server.url}/orthanc/dicom-web", headers={"Authorization": f"Bearer {TOKEN}"})
    # quote_plus percent-encodes; Orthanc alone would find nothing for this (it never decodes)
    found = client.search_for_studies(search_filters={"PatientName": "LEE^ANNA*"})
    assert len(found) == 2
    multi = data.multiframe
    frames = client.retrieve_instance_frames(
        multi.StudyInstanceUID, multi.SeriesInstanceUID, multi.SOPInstanceUID, [1, 3]
    )
    size = multi.Rows * multi.Columns * 2
    assert frames == [multi.PixelData[:size], multi.PixelData[2 * size : 3 * size]]
    metadata = client.retrieve_series_metadata(multi.StudyInstanceUID, multi.SeriesInstanceUID)
    assert pydicom.Dataset.from_json(metadata[0], bulk_data_uri_handler=lambda *_: b"").NumberOfFrames == 4
    assert metadata[0]["00291011"]["BulkDataURI"].startswith(f"{server.url}/orthanc/dicom-web/")


@pytest.mark.orthanc
def test_stow_through_the_gateway_into_orthanc(orthanc_empty: Any) -> None:
    gateway_host = dicomweb_host(orthanc_empty.dicomweb_url, "orthanc")
    datasets = make_study(StudySpec("gw-orthanc-stow", patient_name="STOW^RELAY", n_series=1, n_instances=3))
    with served(create_app(gateway_host, token=TOKEN)) as server:
        relay_host = dicomweb_host(
            f"{server.url}/dicom-web", "relay", requestOptions={"auth": {"token": TOKEN}, "queryEncoding": "percent"}
        )
        result = relay_host.get_data_source().store.dicom(datasets)
        assert [o.status for o in result.outcomes] == ["stored"] * 3
        assert all(o.retrieve_url.startswith(f"{server.url}/dicom-web/studies/") for o in result.outcomes)
        again = relay_host.get_data_source().store.dicom(datasets[:1])
        assert again.outcomes[0].status in ("stored", "failed")  # Orthanc answers a duplicate as stored
    assert datasets[0].StudyInstanceUID in orthanc_empty.study_uids()
    assert orthanc_empty.instance_count() >= 3
