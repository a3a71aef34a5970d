"""docs/gateway.md, run as written: its commands, its configuration, its Python and its OHIF entry.

The only change made to the page's text is the port: 8080 (and Orthanc's 8042) become free ports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from support.ports import free_port

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

DOC = Path(__file__).resolve().parents[1] / "docs/gateway.md"
LEE_CT = "2.25.149445395880599934171435059992354054150"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def block(language: str, marker: str) -> str:
    found = [b for b in blocks(language) if marker in b]
    assert found, f"no {language} block with {marker!r} in {DOC.name}"
    return found[0]


def wait_for(port: int, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert process.poll() is None, "the documented server exited"
        assert time.monotonic() < deadline, "the documented server did not start"
        time.sleep(0.05)


@contextmanager
def running(command: str, cwd: Path, port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a documented ``datasources serve`` line (on ``port``) until the block ends."""
    argv = command.split()
    assert argv[:2] == ["datasources", "serve"], command
    exe = shutil.which("datasources")
    assert exe, "the datasources script is not installed"
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    else:
        argv += ["--port", str(port)]
    process = subprocess.Popen(
        [exe, *argv[1:]], cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=15)


def bash(line: str, cwd: Path, port: int, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["bash", "-c", line.replace("8080", str(port))],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, (line, done.stderr)
    return done.stdout


def write_config(tmp_path: Path, orthanc_port: int | None = None) -> None:
    text = block("yaml", "dataSources:")
    if orthanc_port is not None:
        text = text.replace(":8042/", f":{orthanc_port}/")
    (tmp_path / "gateway.yaml").write_text(text)


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    assert block("bash", "datasources serve").strip() == "datasources serve"
    lines = [line for line in block("bash", "curl -s 'http").splitlines() if line.startswith("curl")]
    with running("datasources serve", tmp_path, port):
        outputs = [bash(line, tmp_path, port) for line in lines]
    lee, muller, series, _, _, misspelt = outputs
    assert {row["00100010"]["Value"][0]["Alphabetic"] for row in json.loads(lee)} == {"LEE^ANNA^K"}
    (row,) = json.loads(muller)
    assert row["00100010"]["Value"][0]["Alphabetic"] == "MÜLLER^KLAUS" and "00081030" in row
    assert len(json.loads(series)) == 2
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert len(metadata) == 7 and all(m["0020000D"]["Value"] == [LEE_CT] for m in metadata)
    from PIL import Image

    assert Image.open(tmp_path / "thumbnail.png").size == (128, 128)
    error = json.loads(misspelt)
    assert error["status"] == 400 and "did you mean 'PatientName'" in error["error"]


@pytest.mark.orthanc
def test_several_sources_and_the_python_client(tmp_path: Path, orthanc_dataset: Any) -> None:
    port = free_port()
    write_config(tmp_path, orthanc_dataset.server.port)
    mkdir, serve = block("bash", "mkdir -p dicom-files").strip().splitlines()
    bash(mkdir, tmp_path, port)
    script = tmp_path / "client.py"
    script.write_text(block("python", "DICOMwebClient").replace("8080", str(port)))
    with running(serve, tmp_path, port) as url:
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert re.search(r"^stored [0-9.]+$", done.stdout, flags=re.M)
        from pydicom import dcmread
        from pydicom.data import get_testdata_file

        size = len(dcmread(get_testdata_file("CT_small.dcm")).PixelData)
        assert f"{size} bytes in frame 1" in done.stdout
        through = requests.get(f"{url}/orthanc/dicom-web/studies", timeout=30).json()
        assert {r["0020000D"]["Value"][0] for r in through} == set(orthanc_dataset.study_uids)
        assert len(requests.get(f"{url}/dicom-web/studies", timeout=30).json()) == 6  # the default: sample
    assert list((tmp_path / "dicom-files").rglob("*.dcm"))  # the folder source really stored it


def test_the_token_section_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    export, serve = block("bash", "--token-env GATEWAY_TOKEN").strip().splitlines()
    token = bash(f'{export}\nprintf %s "$GATEWAY_TOKEN"', tmp_path, port)
    assert len(token) >= 40
    env = {"GATEWAY_TOKEN": token}
    lines = [line for line in block("bash", "Authorization: Bearer $GATEWAY_TOKEN").splitlines() if line]
    with running(serve, tmp_path, port, env) as _:
        status, studies = (bash(line, tmp_path, port, env) for line in lines)
    assert status.strip() == "401"
    assert len(json.loads(studies)) == 6


def test_the_ohif_entry_reads_the_gateway(tmp_path: Path) -> None:
    """The documented data-source entry, read by this project's dicomweb source (OHIF's keys as they are)."""
    from datasources import Host

    port = free_port()
    write_config(tmp_path)
    (tmp_path / "dicom-files").mkdir()  # the folder source, for the upload below
    entry_text = "\n".join(
        line for line in block("js", "dataSourcesModule.dicomweb").splitlines() if not line.startswith("//")
    )
    entry = json.loads(entry_text.replace("8080", str(port)))
    serve = block("bash", "--cors http://localhost:3000").strip()
    with running(serve, tmp_path, port) as url:
        preflight = requests.options(
            f"{url}/sample/dicom-web/studies",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
            timeout=10,
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        host = Host({"dataSources": [entry], "defaultDataSourceName": entry["sourceName"]})
        viewer = host.get_data_source()
        worklist = viewer.query.studies.search(
            {"patientName": "*lee*", "limit": 101, "offset": 0, "fuzzymatching": False}
        )
        assert len(worklist) == 2  # OHIF (supportsWildcard) sends *lee*
        tasks = viewer.retrieve.series.metadata(LEE_CT, return_tasks=True)  # enableStudyLazyLoad
        for task in tasks:
            task.run()
        study = host.metadata_store.get_study(LEE_CT)
        instance = study["series"][0]["instances"][0]
        assert instance["imageId"].startswith(f"wadors:{url}/sample/dicom-web/studies/{LEE_CT}/series/")
        frame = viewer.retrieve.frames(LEE_CT, instance["SeriesInstanceUID"], instance["SOPInstanceUID"], [1])
        assert len(frame[0]) == instance["Rows"] * instance["Columns"] * 2
        # "dicomUploadEnabled": false, as documented: store.dicom through the entry is refused, nothing sent
        from datasources.errors import NotSupportedError
        from support.dicomgen import StudySpec, make_study

        (new,) = make_study(StudySpec("gateway-docs-upload", n_instances=1))
        with pytest.raises(NotSupportedError, match="dicomUploadEnabled: false"):
            viewer.store.dicom([new])
        # set to true, for a source that stores (the folder source): the viewer uploads through STOW-RS
        uploading = json.loads(json.dumps(entry).replace("/sample/", "/local/"))
        uploading["configuration"]["dicomUploadEnabled"] = True
        result = Host({"dataSources": [uploading]}).get_data_source().store.dicom([new])
        assert [o.status for o in result.outcomes] == ["stored"], result.outcomes
        assert list((tmp_path / "dicom-files").rglob(f"{new.SOPInstanceUID}.dcm"))


def test_the_python_application_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    write_config(tmp_path)
    (tmp_path / "dicom-files").mkdir()
    script = tmp_path / "app.py"
    script.write_text(block("python", "uvicorn.run(app").replace("8080", str(port)))
    process = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(port, process)
        url = f"http://127.0.0.1:{port}"
        assert len(requests.get(f"{url}/sample/dicom-web/studies", timeout=10).json()) == 6
        assert requests.get(f"{url}/local/dicom-web/studies", timeout=10).json() == []
        assert requests.get(f"{url}/orthanc/dicom-web/studies", timeout=10).status_code == 404  # not in sources=
    finally:
        process.terminate()
        process.communicate(timeout=15)


def test_the_allowed_hosts_line_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    line = block("bash", "--allowed-hosts pacs.example.org").strip()
    with running(line, tmp_path, port) as url:
        for allowed in ("pacs.example.org", "10.0.0.5", f"pacs.example.org:{port}"):
            assert requests.get(f"{url}/dicom-web/studies", headers={"Host": allowed}, timeout=10).status_code == 200
        for refused in ("attacker.example", "127.0.0.1", "localhost"):  # the given list replaces the default
            answer = requests.get(f"{url}/dicom-web/studies", headers={"Host": refused}, timeout=10)
            assert answer.status_code == 400 and answer.json()["type"] == "BadHost"


def test_the_stow_bounds_table_is_the_code() -> None:
    import inspect

    from datasources.cli.serve import serve
    from datasources.gateway import create_app

    section = DOC.read_text(encoding="utf-8").split("## STOW-RS", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(--[\w-]+)` \(`(\w+)`\) \| [^|(]*?(?:\((\d+)\)|(\d+) parts) \|", section, flags=re.M)
    assert len(rows) == 3, rows
    cli, app = inspect.signature(serve).parameters, inspect.signature(create_app).parameters
    for option, argument, bytes_, parts in rows:
        expected = int(bytes_ or parts)
        assert cli[argument].default == app[argument].default == expected, option
        assert option in _serve_help()


def _serve_help() -> str:
    exe = shutil.which("datasources")
    assert exe, "the datasources script is not installed"
    done = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    return done.stdout
