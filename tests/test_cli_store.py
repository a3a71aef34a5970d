"""``datasources store FILES...``: STOW into a real Orthanc, batches, per-instance summary, exit codes, auth."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from datasources import multipart
from datasources.cli import main
from datasources.cli.store import collect_files
from support.dicomgen import StudySpec, make_study, write_datasets
from support.faultserver import Reply

NAMESPACE = "default.dataSourcesModule.dicomweb"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def config_file(folder: Path, url: str, **options: Any) -> Path:
    configuration: dict[str, Any] = {"wadoRoot": url, "qidoRoot": url}
    if options:
        configuration["requestOptions"] = options
    path = folder / "store-config.json"
    entry = {"namespace": NAMESPACE, "sourceName": "pacs", "configuration": configuration}
    path.write_text(json.dumps({"dataSources": [entry]}))
    return path


def sops_on_server(dicomweb_url: str, study_uid: str, auth: Any = None) -> set[str]:
    answer = requests.get(f"{dicomweb_url}/studies/{study_uid}/instances", auth=auth, timeout=30)
    if answer.status_code == 204 or not answer.content.strip():
        return set()
    assert answer.status_code == 200, answer.text
    return {row["00080018"]["Value"][0] for row in answer.json()}


def test_collect_files_walks_folders_once(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden-dir").mkdir()
    for name in ("a/2.dcm", "a/1.dcm", "a/deep/3.dcm", "a/.index.sqlite", ".hidden-dir/x.dcm", "single.dcm"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path / "a", tmp_path / "b-link")  # a link to a folder is not walked
    found = collect_files([tmp_path / "a" / "1.dcm", tmp_path / "a", tmp_path / "single.dcm", tmp_path / "single.dcm"])
    assert found == [tmp_path / "a/1.dcm", tmp_path / "a/2.dcm", tmp_path / "a/deep/3.dcm", tmp_path / "single.dcm"]
    assert [p.name for p in collect_files([tmp_path])] == ["single.dcm", "1.dcm", "2.dcm", "3.dcm"]


def test_store_files_and_folders_into_orthanc(
    capsys: pytest.CaptureFixture[str], orthanc_empty: Any, tmp_path: Path
) -> None:
    datasets = make_study(StudySpec("cli-store-a", "LEE^ANNA", n_series=2, n_instances=3))
    files = write_datasets(datasets, tmp_path / "study")
    config = config_file(tmp_path, orthanc_empty.dicomweb_url)
    # a file named on its own and again inside its folder is sent once
    code, out, err = run(capsys, "store", str(files[0]), str(tmp_path / "study"), "--config", str(config))
    assert code == 0, err
    assert "6 of 6 instances stored in pacs (0 with a warning, 0 failed)" in out
    for ds in datasets:
        assert ds.SOPInstanceUID in out
    assert out.count("stored") >= 7  # one status per instance, plus the closing line
    expected = {ds.SOPInstanceUID for ds in datasets}
    assert sops_on_server(orthanc_empty.dicomweb_url, datasets[0].StudyInstanceUID) == expected
    # what Orthanc serves back is the file that was sent
    sop = datasets[4]
    raw = requests.get(
        f"{orthanc_empty.dicomweb_url}/studies/{sop.StudyInstanceUID}/series/{sop.SeriesInstanceUID}"
        f"/instances/{sop.SOPInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
        timeout=30,
    )
    parts = multipart.parse(raw.content, raw.headers["Content-Type"])
    back = pydicom.dcmread(io.BytesIO(parts[0].content))
    assert back.PatientName == sop.PatientName and back.PixelData == sop.PixelData


def test_refused_files_are_listed_and_exit_1(
    capsys: pytest.CaptureFixture[str], orthanc_empty: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = make_study(StudySpec("cli-store-b", "GARCIA^JOSE", n_instances=2))
    folder = tmp_path / "mixed"
    write_datasets(datasets, folder)
    (folder / "notes.txt").write_text("not DICOM at all")
    config = config_file(tmp_path, orthanc_empty.dicomweb_url)
    code, out, err = run(capsys, "store", str(folder), "--config", str(config), "--json")
    assert code == 1
    report = json.loads(out)
    assert (report["files"], report["stored"], report["failed"], report["notSent"]) == (3, 2, 1, 0)
    by_file = {Path(row["file"]).name: row for row in report["instances"]}
    assert by_file["notes.txt"]["status"] == "failed" and "not DICOM" in by_file["notes.txt"]["reason"]
    assert {by_file[f"{ds.SOPInstanceUID}.dcm"]["status"] for ds in datasets} == {"stored"}
    assert "1 of 3 instances were not stored" in err
    # the refusal did not stop the others
    assert sops_on_server(orthanc_empty.dicomweb_url, datasets[0].StudyInstanceUID) == {
        ds.SOPInstanceUID for ds in datasets
    }
    # --quiet lists only the refused one, named as typed
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "store", "mixed", "--config", str(config), "--quiet")
    assert code == 1
    assert "mixed/notes.txt" in out and "not DICOM" in out and datasets[0].SOPInstanceUID not in out


def test_batches_and_the_servers_word_per_instance(
    capsys: pytest.CaptureFixture[str], fault_server: Any, tmp_path: Path
) -> None:
    datasets = make_study(StudySpec("cli-store-c", n_instances=5))
    files = write_datasets(datasets, tmp_path / "five")
    sops = [ds.SOPInstanceUID for ds in datasets]
    sop_class = datasets[0].SOPClassUID

    def ref(sop: str, **extra: Any) -> dict[str, Any]:
        return {"00081150": {"vr": "UI", "Value": [sop_class]}, "00081155": {"vr": "UI", "Value": [sop]}, **extra}

    answer = {
        "00081199": {
            "vr": "SQ",
            "Value": [
                ref(sops[0]),
                ref(sops[1], **{"00081196": {"vr": "US", "Value": [0xB000]}}),
                ref(sops[3]),
                ref(sops[4]),
            ],
        },
        "00081198": {"vr": "SQ", "Value": [ref(sops[2], **{"00081197": {"vr": "US", "Value": [0xA700]}})]},
    }
    fault_server.script("/dicom-web/studies", Reply.json(answer, status=202))
    config = config_file(tmp_path, f"{fault_server.url}/dicom-web")
    code, out, err = run(capsys, "store", *map(str, files), "-b", "2", "--config", str(config), "--json")
    assert code == 1, err
    posts = fault_server.requests_to("/dicom-web/studies")
    assert [r.method for r in posts] == ["POST"] * 3
    sent = [multipart.parse(r.body, r.headers["Content-Type"]) for r in posts]
    assert [len(parts) for parts in sent] == [2, 2, 1]
    assert all('type="application/dicom"' in r.headers["Content-Type"] for r in posts)
    assert [p.content for parts in sent for p in parts] == [f.read_bytes() for f in files]
    report = json.loads(out)
    statuses = {row["SOPInstanceUID"]: (row["status"], row["reason"]) for row in report["instances"]}
    assert statuses == {
        sops[0]: ("stored", None),
        sops[1]: ("warning", "coercion of data elements"),
        sops[2]: ("failed", "out of resources"),
        sops[3]: ("stored", None),
        sops[4]: ("stored", None),
    }
    assert (report["stored"], report["warnings"], report["failed"]) == (3, 1, 1)


def test_refused_batch_goes_on_lost_connection_stops(
    capsys: pytest.CaptureFixture[str], fault_server: Any, tmp_path: Path
) -> None:
    datasets = make_study(StudySpec("cli-store-d", n_instances=3))
    files = write_datasets(datasets, tmp_path / "three")
    sop_class = datasets[0].SOPClassUID
    item = {
        "00081150": {"vr": "UI", "Value": [sop_class]},
        "00081155": {"vr": "UI", "Value": [datasets[0].SOPInstanceUID]},
    }
    first = {"00081199": {"vr": "SQ", "Value": [item]}}
    config = config_file(tmp_path, f"{fault_server.url}/dicom-web", retries=0)

    # an HTTP error on a batch refuses that batch's instances; the next batches are still sent
    fault_server.script("/dicom-web/studies", Reply.json(first), Reply(500, b"disk full"))
    code, out, err = run(capsys, "store", *map(str, files), "-b", "1", "--config", str(config))
    assert code == 1
    assert len(fault_server.requests_to("/dicom-web/studies")) == 3
    assert "1 of 3 instances stored" in out and "500" in out
    assert "2 of 3 instances were not stored" in err

    # a lost connection stops the run: what was sent is listed, the rest is counted as not sent
    fault_server.reset()
    fault_server.script("/dicom-web/studies", Reply.json(first), Reply(drop=True))
    code, out, err = run(capsys, "store", *map(str, files), "-b", "1", "--config", str(config))
    assert code == 1
    assert len(fault_server.requests_to("/dicom-web/studies")) == 2  # a POST is never retried
    assert datasets[0].SOPInstanceUID in out and "1 of 3 instances stored" in out
    assert "(2 of 3 files not sent)" in err


def test_basic_auth_right_and_wrong(
    capsys: pytest.CaptureFixture[str], orthanc_basic_auth: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = orthanc_basic_auth
    datasets = make_study(StudySpec("cli-store-auth", n_instances=2))
    files = write_datasets(datasets, tmp_path / "auth")
    config = config_file(tmp_path, server.dicomweb_url, auth="${STORE_USER}:${STORE_PASSWORD}")
    monkeypatch.setenv("STORE_USER", server.user)
    try:
        monkeypatch.setenv("STORE_PASSWORD", f"wrong-{server.password}")
        code, out, err = run(capsys, "store", *map(str, files), "--config", str(config))
        assert code == 1
        assert "401" in err and "2 of 2 files not sent" in err
        secrets = [server.password, base64.b64encode(f"{server.user}:wrong-{server.password}".encode()).decode()]
        for secret in secrets:
            assert secret not in out and secret not in err
        assert sops_on_server(server.dicomweb_url, datasets[0].StudyInstanceUID, server.auth) == set()

        monkeypatch.setenv("STORE_PASSWORD", server.password)
        code, out, err = run(capsys, "store", *map(str, files), "--config", str(config))
        assert code == 0, err
        assert "2 of 2 instances stored" in out and server.password not in out + err
        assert sops_on_server(server.dicomweb_url, datasets[0].StudyInstanceUID, server.auth) == {
            ds.SOPInstanceUID for ds in datasets
        }
    finally:
        server.clear()  # the basic-auth server is shared and other tests expect it empty


def test_usage_and_unsupported_sources(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "store", str(tmp_path / "missing.dcm"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "store", str(tmp_path / "empty"))
    assert code == 2 and "no files to store" in err
    one = write_datasets(make_study(StudySpec("cli-store-e", n_instances=1)), tmp_path / "one")
    code, out, err = run(capsys, "store", str(one[0]))  # the bundled sample is read-only
    assert code == 1 and "not supported" in err and "read-only" in err and out == ""
    config = config_file(tmp_path, "http://127.0.0.1:9/dicom-web")
    code, _, err = run(capsys, "store", str(one[0]), "--config", str(config), "--source", "nope")
    assert code == 1 and "nope" in err
    code, _, err = run(capsys, "store", str(one[0]), "--batch-size", "0")
    assert code == 2
