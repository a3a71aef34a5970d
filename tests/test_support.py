"""The test support itself: a real Orthanc starts, loads data and enforces auth; faults are scripted."""

from __future__ import annotations

import http.client
import io
import itertools
import socket
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from support import orthanc_fixtures
from support.dicomgen import (
    PRIVATE_CREATOR,
    StudySpec,
    _pixels,
    _pixels_python,
    dataset_to_bytes,
    make_study,
    make_uid,
    study_to_bytes,
    write_study,
)
from support.faultserver import FaultServer, Reply
from support.orthanc import OrthancServer, listening_addresses

# -- dicomgen ------------------------------------------------------------------------------------


def test_generated_data_is_deterministic_part10() -> None:
    spec = StudySpec("x", n_series=2, n_instances=2, frames=3)
    first, again = make_study(spec), make_study(spec)
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]
    assert len({d.SOPInstanceUID for d in first}) == 4 and len({d.SeriesInstanceUID for d in first}) == 2
    raw = dataset_to_bytes(first[0])
    assert raw[:128] == b"\0" * 128 and raw[128:132] == b"DICM" and raw == dataset_to_bytes(again[0])
    back = pydicom.dcmread(io.BytesIO(raw))
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.NumberOfFrames == 3 and len(back.PixelData) == 3 * 16 * 16 * 2
    assert back.pixel_array.shape == (3, 16, 16) and int(back.pixel_array.max()) < 4096


def test_make_study_positional_signature_matches_the_spec() -> None:
    positional = make_study("p", "DOE^JANE", "PID9", "MR", 2, 3, "20220202", "MR BRAIN W/WO CONTRAST", 8, 12)
    spec = StudySpec("p", patient_name="DOE^JANE", patient_id="PID9", modality="MR", n_series=2, n_instances=3,
                     study_date="20220202", description="MR BRAIN W/WO CONTRAST", rows=8, cols=12)  # fmt: skip
    assert [dataset_to_bytes(d) for d in positional] == [dataset_to_bytes(d) for d in make_study(spec)]
    first = positional[0]
    assert (str(first.PatientName), first.Modality, first.Rows, first.Columns) == ("DOE^JANE", "MR", 8, 12)
    assert first.StudyInstanceUID == spec.study_uid and first.SeriesInstanceUID == spec.series_uid(0)
    with pytest.raises(TypeError):
        make_study(spec, "extra")


def test_uids_are_valid_and_stable_when_the_shape_changes() -> None:
    small = make_study("stable", n_series=1, n_instances=2)
    large = make_study("stable", n_series=3, n_instances=5)
    assert [d.SOPInstanceUID for d in small] == [d.SOPInstanceUID for d in large[:2]]
    assert make_uid("a", 1) != make_uid("a", 2) and make_uid("a", 1) == make_uid("a", 1)
    for ds in large:
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID):
            assert uid.startswith("2.25.") and len(uid) <= 64 and uid.is_valid


def test_instances_carry_what_a_viewer_needs() -> None:
    ct = make_study("view", modality="CT", n_instances=2)
    for keyword in ("Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient",
                    "SliceThickness", "BitsAllocated", "PhotometricInterpretation", "WindowCenter",
                    "RescaleIntercept", "FrameOfReferenceUID", "InstanceNumber", "SeriesNumber"):  # fmt: skip
        assert keyword in ct[0], keyword
    assert [d.ImagePositionPatient[2] for d in ct] == [0.0, 2.5] and ct[0].RescaleIntercept == -1024
    block = ct[0].private_block(0x0029, PRIVATE_CREATOR)
    assert block[0x11].VR == "OB" and len(block[0x11].value) == 512
    assert "PixelData" in ct[0] and not any(e.tag.is_private for e in make_study("np", private=False)[0])


def test_numpy_and_pure_python_pixels_agree() -> None:
    for args in [(16, 16, 1, 3), (7, 5, 4, 40), (64, 32, 3, 0)]:
        assert _pixels(*args) == _pixels_python(*args)


def test_write_study_and_bytes(tmp_path: Path) -> None:
    paths = write_study(StudySpec("w", n_instances=2), tmp_path / "out")
    assert len(paths) == 2 and all(p.suffix == ".dcm" for p in paths)
    assert [p.read_bytes() for p in paths] == study_to_bytes("w", n_instances=2)
    assert pydicom.dcmread(paths[1]).SOPInstanceUID == paths[1].stem


# -- Orthanc -------------------------------------------------------------------------------------


def test_orthanc_serves_the_dataset_on_loopback_only(orthanc_dataset: Any, request: pytest.FixtureRequest) -> None:
    server = orthanc_dataset.server
    assert request.node.get_closest_marker("orthanc") is not None
    studies = requests.get(f"{orthanc_dataset.dicomweb_url}/studies", timeout=30).json()
    assert {s["0020000D"]["Value"][0] for s in studies} == set(orthanc_dataset.study_uids)
    assert server.instance_count() == len(orthanc_dataset.datasets) == len(orthanc_dataset.files) == 11
    addresses = listening_addresses(server.port)
    assert "127.0.0.1" in addresses and "0.0.0.0" not in addresses and "::" not in addresses
    assert "password" not in repr(server)


def test_orthanc_metadata_has_the_generated_values(orthanc_dataset: Any) -> None:
    spec = orthanc_dataset.study("okafor")
    meta = requests.get(f"{orthanc_dataset.dicomweb_url}/studies/{spec.study_uid}/metadata", timeout=30).json()
    assert len(meta) == 1
    [instance] = meta
    assert instance["00280008"]["Value"] == [4]  # the multi-frame instance
    assert instance["00100010"]["Value"] == [{"Alphabetic": "OKAFOR^NGOZI^A"}]
    assert instance["00081030"]["Value"] == ["MR KNEE LEFT"]
    private_ob = instance["00291011"]
    assert private_ob["vr"] == "OB" and private_ob["BulkDataURI"].startswith(orthanc_dataset.dicomweb_url)
    bulk = requests.get(private_ob["BulkDataURI"], timeout=30, headers={"Accept": "multipart/related; "
                        'type="application/octet-stream"; transfer-syntax=*'})  # fmt: skip
    assert bulk.status_code == 200 and bytes(range(256)) * 2 in bulk.content
    assert orthanc_dataset.multiframe.SOPInstanceUID == instance["00080018"]["Value"][0]


def test_orthanc_matches_literal_wildcards(orthanc_dataset: Any) -> None:
    # Orthanc does not percent-decode: '?' stands for the space, sent raw.
    url = f"{orthanc_dataset.dicomweb_url}/studies?StudyDescription=CT?CHEST*&includefield=StudyDescription"
    rows = requests.get(url, timeout=30).json()
    assert [r["00081030"]["Value"][0] for r in rows] == ["CT CHEST W/O CONTRAST"]


def test_the_dataset_is_restored_after_a_test_changes_it(orthanc_dataset: Any) -> None:
    server = orthanc_dataset.server
    server.clear()
    assert server.study_count() == 0
    server.upload(make_study("intruder", n_instances=1))
    orthanc_dataset.ensure_loaded()
    assert server.study_uids() == set(orthanc_dataset.study_uids)
    assert server.instance_count() == len(orthanc_dataset.datasets)


def test_upload_clear_and_stow_on_an_empty_server(orthanc_empty: OrthancServer, tmp_path: Path) -> None:
    orthanc_empty.clear()
    datasets = make_study("upload", n_series=1, n_instances=4)
    paths = write_study("upload", tmp_path, n_series=1, n_instances=4)
    ids = orthanc_empty.upload([dataset_to_bytes(datasets[0]), paths[1], str(paths[2])])
    ids += orthanc_empty.upload(datasets[3])
    assert len(set(ids)) == 4 and orthanc_empty.instance_count() == 4
    qido = requests.get(f"{orthanc_empty.dicomweb_url}/studies/{datasets[0].StudyInstanceUID}/instances", timeout=30)
    assert {r["00080018"]["Value"][0] for r in qido.json()} == {d.SOPInstanceUID for d in datasets}
    orthanc_empty.clear()
    assert orthanc_empty.study_count() == 0
    assert requests.get(f"{orthanc_empty.dicomweb_url}/studies", timeout=30).json() == []

    # a STOW-RS request (multipart/related) is visible in QIDO too
    stow = make_study("stow", n_instances=2)
    boundary = b"datasources-tests-boundary"
    body = b"".join(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + dataset_to_bytes(d) + b"\r\n"
                    for d in stow) + b"--" + boundary + b"--\r\n"  # fmt: skip
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary.decode()}'
    answer = requests.post(f"{orthanc_empty.dicomweb_url}/studies", data=body, timeout=30,
                           headers={"Content-Type": content_type, "Accept": "application/dicom+json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    found = requests.get(
        f"{orthanc_empty.dicomweb_url}/studies?StudyInstanceUID={stow[0].StudyInstanceUID}", timeout=30
    )
    assert [r["0020000D"]["Value"][0] for r in found.json()] == [stow[0].StudyInstanceUID]


def test_basic_auth_is_enforced(orthanc_basic_auth: OrthancServer) -> None:
    server = orthanc_basic_auth
    url = f"{server.dicomweb_url}/studies"
    unauthenticated = requests.get(url, timeout=30)
    assert unauthenticated.status_code == 401 and "Basic" in unauthenticated.headers["WWW-Authenticate"]
    assert requests.get(url, auth=(server.user, "wrong"), timeout=30).status_code == 401
    assert requests.get(url, auth=("mallory", server.password), timeout=30).status_code == 401
    assert server.auth == (server.user, server.password) and server.password
    assert requests.get(url, auth=server.auth, timeout=30).status_code == 200
    server.upload(make_study("auth", n_instances=1))  # the helpers carry the credentials
    assert server.study_count() == 1
    server.clear()
    assert server.password not in repr(server)


def test_missing_orthanc_skips_or_fails_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orthanc_fixtures, "ensure_installed", lambda: False)  # no real way to uninstall here
    monkeypatch.delenv("DATASOURCES_REQUIRE_ORTHANC", raising=False)
    with pytest.raises(pytest.skip.Exception):
        orthanc_fixtures._require_orthanc()
    monkeypatch.setenv("DATASOURCES_REQUIRE_ORTHANC", "1")
    with pytest.raises(pytest.fail.Exception, match="DATASOURCES_REQUIRE_ORTHANC=1"):
        orthanc_fixtures._require_orthanc()


def test_an_orthanc_test_skipped_in_ci_fails_the_run_under_xdist_too(tmp_path: Path) -> None:
    """Under ``DATASOURCES_REQUIRE_ORTHANC=1`` (``.ci/run``) a skip that slipped past the fixtures
    still fails the run: the exit status, not only a line, and with the workers of pytest-xdist."""
    import os
    import subprocess
    import sys

    (tmp_path / "conftest.py").write_text('pytest_plugins = ["support.orthanc_fixtures"]\n')
    (tmp_path / "test_one.py").write_text(
        "import pytest\n\n@pytest.mark.orthanc\ndef test_skipped():\n    pytest.skip('no server here')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DATASOURCES_REQUIRE"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]

    def run(*extra: str, **more_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *extra], cwd=tmp_path, env={**env, **more_env}, capture_output=True, text=True, timeout=120
        )

    required = run("-n", "1", DATASOURCES_REQUIRE_ORTHANC="1")  # a controller and a worker, as in CI
    assert required.returncode == 1, required.stdout[-2000:]
    assert "ERROR: 1 Orthanc tests were skipped" in required.stdout
    alone = run("-n", "0")
    assert alone.returncode == 0 and "1 skipped" in alone.stdout, alone.stdout[-2000:]


# -- fault server --------------------------------------------------------------------------------


def test_fault_server_scripts_replies_in_turn(fault_server: FaultServer) -> None:
    fault_server.script("/a", Reply(503), Reply(200, b"ok"))
    assert requests.get(f"{fault_server.url}/a", timeout=5).status_code == 503
    assert requests.get(f"{fault_server.url}/a?x=1", timeout=5).text == "ok"
    assert requests.get(f"{fault_server.url}/a", timeout=5).text == "ok"  # the last reply repeats
    assert [r.query for r in fault_server.requests_to("/a")] == ["", "x=1", ""]
    assert requests.get(f"{fault_server.url}/unscripted", timeout=5).status_code == 404
    fault_server.script("/studies/*/metadata", Reply.json([{"00080018": {"vr": "UI", "Value": ["1.2"]}}]))
    answer = requests.get(f"{fault_server.url}/studies/1.2.3/metadata", timeout=5)
    assert answer.headers["Content-Type"] == "application/dicom+json" and answer.json()[0]["00080018"]
    assert len(fault_server.requests_to("/studies/*/metadata")) == 1
    fault_server.script("*", Reply(200, "anything"))
    assert requests.head(f"{fault_server.url}/x", timeout=5).headers["Content-Length"] == "8"
    assert requests.get(f"{fault_server.url}/y", timeout=5).text == "anything"


def test_fault_server_retry_after_delay_and_garbage(fault_server: FaultServer) -> None:
    fault_server.script("/busy", Reply(429, headers={"Retry-After": "1"}), Reply(200, b"{not json", delay=0.3))
    first = requests.get(f"{fault_server.url}/busy", timeout=5)
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    started = time.monotonic()
    second = requests.get(f"{fault_server.url}/busy", timeout=5)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ValueError):
        second.json()
    times = [r.at for r in fault_server.requests_to("/busy")]
    assert times[0] <= times[1]


def test_fault_server_truncates_hangs_and_drops(fault_server: FaultServer) -> None:
    fault_server.script("/t", Reply(200, b"0123456789", truncate_to=4))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{fault_server.url}/t", timeout=5)
    fault_server.script("/h", Reply(hang=True))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{fault_server.url}/h", timeout=0.5)
    fault_server.script("/stall", Reply(200, b"0123456789", truncate_to=3, hang=True))
    with pytest.raises(requests.exceptions.ConnectionError):  # body read times out after the headers
        requests.get(f"{fault_server.url}/stall", timeout=0.5).content  # noqa: B018
    fault_server.script("/drop", Reply(drop=True))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{fault_server.url}/drop", timeout=5)
    fault_server.script("/lie", Reply(200, b"short", {"Content-Length": "100"}, truncate_to=5))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{fault_server.url}/lie", timeout=5)


def test_fault_server_records_headers_raw_queries_and_bodies(fault_server: FaultServer) -> None:
    fault_server.script("*", Reply(200))
    requests.get(f"{fault_server.url}/auth", auth=("u", "p"), timeout=5)
    requests.get(f"{fault_server.url}/plain", timeout=5)
    assert fault_server.requests_to("/auth")[0].headers["authorization"].startswith("Basic ")
    assert "Authorization" not in fault_server.requests_to("/plain")[0].headers
    # the query is recorded exactly as sent (no decoding): what Orthanc would see
    connection = http.client.HTTPConnection("127.0.0.1", fault_server.port, timeout=5)
    connection.request("GET", "/q?PatientName=LEE^ANNA*&StudyDescription=CT%20CHEST")
    assert connection.getresponse().status == 200
    connection.close()
    recorded = fault_server.requests_to("/q")[0]
    assert recorded.query == "PatientName=LEE^ANNA*&StudyDescription=CT%20CHEST"
    assert recorded.params == [("PatientName", "LEE^ANNA*"), ("StudyDescription", "CT CHEST")]
    requests.post(f"{fault_server.url}/stow", data=iter([b"part1-", b"part2"]), timeout=5)  # chunked upload
    posted = fault_server.requests_to("/stow")[0]
    assert posted.method == "POST" and posted.body == b"part1-part2"
    assert posted.headers["Transfer-Encoding"] == "chunked"


def test_fault_server_is_loopback_and_stops() -> None:
    with FaultServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        server.script("/h", Reply(hang=True))
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{server.url}/h", timeout=0.2)
        port = server.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


# -- ports ---------------------------------------------------------------------------------------


def test_ports_for_servers_are_outside_the_ephemeral_range_and_never_repeat() -> None:
    from support import ports

    low = ports._ephemeral_low()
    begin, _, stop = ports._slice()
    given = [ports.free_port() for _ in range(50)]
    assert len(set(given)) == 50 and all(begin <= p < stop for p in given)
    with socket.socket() as taken:  # a port someone listens on is skipped
        taken.bind(("127.0.0.1", given[-1] + 1))
        taken.listen(1)
        assert ports.free_port() != given[-1] + 1
    if low - ports._FLOOR >= 1000:  # the usual ip_local_port_range: the slice lies wholly below it
        assert begin >= ports._FLOOR and stop <= low
        with socket.socket() as client:  # so what bind(0) hands out is never one of these
            client.bind(("127.0.0.1", 0))
            assert not begin <= client.getsockname()[1] < stop


def test_each_xdist_worker_draws_ports_from_its_own_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    from support import ports

    slices = []
    for worker in range(4):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
        begin, first, stop = ports._slice()
        assert begin <= first < stop
        slices.append(range(begin, stop))
    for one, other in itertools.pairwise(slices):
        assert one.stop <= other.start  # disjoint, in order
