"""``datasources serve`` with a dimse source: a DIMSE-only PACS read as DICOMweb.

dicomweb-client and this project's dicomweb source read the gateway (in front of Orthanc's
DICOM port); their searches, metadata and frames equal what Orthanc's own DICOMweb gives
for the same instances — frames byte for byte, compressed ones included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
dicomweb_client = pytest.importorskip("dicomweb_client")

import requests  # noqa: E402
from datasources import Host  # noqa: E402
from datasources.gateway import create_app  # noqa: E402
from dicomweb_client.api import DICOMwebClient  # noqa: E402
from support.dimse_fixtures import *  # noqa: E402, F403
from support.dimse_fixtures import dimse_host  # noqa: E402
from test_gateway_support import Served, served  # noqa: E402

QUERIES = ({}, {"PatientName": "LEE^ANNA*"}, {"StudyDate": "20200101-20231231"}, {"ModalitiesInStudy": "MR"},
           {"StudyDescription": "*CONTRAST"}, {"AccessionNumber": "ACC9000"})  # fmt: skip


def web_host(url: str, name: str) -> Host:
    configuration = {"name": name, "qidoRoot": url, "wadoRoot": url, "requestOptions": {"retries": 0}}
    entry = {"namespace": "default.dataSourcesModule.dicomweb", "sourceName": name, "configuration": configuration}
    return Host({"dataSources": [entry]})


@pytest.fixture(scope="module")
def gateway(orthanc_pacs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Served]]:
    cache = tmp_path_factory.mktemp("dimse-gateway-cache")
    host = dimse_host(orthanc_pacs.server.source_config(cache={"folder": str(cache)}))
    with served(create_app(host, metadata_ttl=0)) as server:
        yield orthanc_pacs, server


def _uids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r.get("0020000D", {}).get("Value", [None])[0] or r.get("StudyInstanceUID") for r in rows)


def test_dicomweb_client_reads_the_pacs_as_orthanc_dicomweb(gateway: tuple[Any, Served]) -> None:
    data, server = gateway
    ours = DICOMwebClient(f"{server.url}/pacs/dicom-web")
    orthanc = DICOMwebClient(data.server.dicomweb_url)
    direct = web_host(data.server.dicomweb_url, "orthanc").get_data_source()  # Orthanc never percent-decodes
    for query in QUERIES:
        want = sorted(r["StudyInstanceUID"] for r in direct.query.studies.search(dict(query)))
        assert _uids(ours.search_for_studies(search_filters=query)) == want and want, query
    refused: list[str] = []
    for original in [*data.compressed, next(d for d in data.datasets if int(d.get("NumberOfFrames") or 1) > 1)]:
        ids = (str(original.StudyInstanceUID), str(original.SeriesInstanceUID), str(original.SOPInstanceUID))
        count = int(original.get("NumberOfFrames") or 1)
        numbers = list(range(1, min(count, 3) + 1))
        got = ours.retrieve_instance_frames(*ids, numbers, media_types=(("application/octet-stream", "*"),))
        assert [bytes(f) for f in got] == stored_frames(original, numbers), original.SeriesDescription
        try:
            theirs = orthanc.retrieve_instance_frames(*ids, numbers, media_types=(("application/octet-stream", "*"),))
        except requests.HTTPError:
            refused.append(str(original.SeriesDescription))  # Orthanc 1.10 cannot serve some syntaxes
            continue
        assert [bytes(f) for f in got] == [bytes(f) for f in theirs], original.SeriesDescription
        meta = ours.retrieve_series_metadata(ids[0], ids[1])
        want = orthanc.retrieve_series_metadata(ids[0], ids[1])
        assert meta[0]["00080018"] == want[0]["00080018"] and meta[0]["00280010"] == want[0]["00280010"]
        assert meta[0]["7FE00010"]["BulkDataURI"].startswith(f"{server.url}/pacs/dicom-web/")
    assert len(refused) <= 2, refused  # the rest were compared with Orthanc's own frames, byte for byte


def stored_frames(ds: Any, numbers: list[int]) -> list[bytes]:
    """Frames as the stored file holds them (encapsulated fragments, or native slices)."""
    from pydicom.encaps import generate_frames

    count = int(ds.get("NumberOfFrames") or 1)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [frames[n - 1] for n in numbers]
    size = len(ds.PixelData) // count
    return [ds.PixelData[(n - 1) * size : n * size] for n in numbers]


def test_the_projects_dicomweb_source_reads_the_pacs_through_the_gateway(gateway: tuple[Any, Served]) -> None:
    data, server = gateway
    relay_host = web_host(f"{server.url}/pacs/dicom-web", "relay")
    direct_host = web_host(data.server.dicomweb_url, "orthanc")
    relay, direct = relay_host.get_data_source(), direct_host.get_data_source()
    for query in QUERIES:
        got = sorted(r["StudyInstanceUID"] for r in relay.query.studies.search(dict(query)))
        assert got == sorted(r["StudyInstanceUID"] for r in direct.query.studies.search(dict(query))), query
    study = data.study_uids[0]
    relay.retrieve.series.metadata(study)
    direct.retrieve.series.metadata(study)
    got, want = (
        {i["SOPInstanceUID"]: i for s in h.metadata_store.get_study(study)["series"] for i in s["instances"]}
        for h in (relay_host, direct_host)
    )
    assert set(got) == set(want) and len(got) == 6
    for sop, instance in got.items():
        for key in ("PatientName", "Modality", "SeriesNumber", "InstanceNumber", "ImagePositionPatient", "Rows"):
            assert instance.get(key) == want[sop].get(key), (sop, key)
        frames = relay.retrieve.frames(study, instance["SeriesInstanceUID"], sop, [1])
        assert bytes(frames[0]) == bytes(direct.retrieve.frames(study, instance["SeriesInstanceUID"], sop, [1])[0])
