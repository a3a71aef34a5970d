"""The test support itself: a real Orthanc starts, loads data and enforces auth; faults are scripted."""

from __future__ import annotations

import pydicom
import pytest
import requests
from support.dicomgen import StudySpec, dataset_to_bytes, make_study
from support.faultserver import FaultServer, Reply


def test_generated_data_is_deterministic_part10() -> None:
    spec = StudySpec("x", n_series=2, n_instances=2, frames=3)
    first, again = make_study(spec), make_study(spec)
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]
    raw = dataset_to_bytes(first[0])
    assert raw[128:132] == b"DICM" and raw == dataset_to_bytes(again[0])
    back = pydicom.dcmread(__import__("io").BytesIO(raw))
    assert back.NumberOfFrames == 3 and len(back.PixelData) == 3 * 16 * 16 * 2


def test_orthanc_serves_the_dataset(orthanc_dataset) -> None:  # type: ignore[no-untyped-def]
    url = orthanc_dataset.server.dicomweb_url
    studies = requests.get(f"{url}/studies", timeout=30).json()
    assert {s["0020000D"]["Value"][0] for s in studies} == {s.study_uid for s in orthanc_dataset.specs}
    # loopback only: the port is bound on 127.0.0.1, not on every interface
    import subprocess

    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    port = orthanc_dataset.server.port
    if listening:
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening


def test_basic_auth_is_enforced(orthanc_basic_auth) -> None:  # type: ignore[no-untyped-def]
    url = f"{orthanc_basic_auth.dicomweb_url}/studies"
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, auth=("alice", "wrong"), timeout=30).status_code == 401
    assert requests.get(url, auth=orthanc_basic_auth.auth, timeout=30).status_code == 200


def test_fault_server_scripts_replies(fault_server: FaultServer) -> None:
    fault_server.script("/a", Reply(503), Reply(200, b"ok"))
    assert requests.get(f"{fault_server.url}/a", timeout=5).status_code == 503
    assert requests.get(f"{fault_server.url}/a?x=1", timeout=5).text == "ok"
    assert requests.get(f"{fault_server.url}/a", timeout=5).text == "ok"  # the last reply repeats
    assert [r.query for r in fault_server.requests_to("/a")] == ["", "x=1", ""]
    fault_server.script("/t", Reply(200, b"0123456789", truncate_to=4))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{fault_server.url}/t", timeout=5)
    fault_server.script("/h", Reply(hang=True))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{fault_server.url}/h", timeout=0.5)
