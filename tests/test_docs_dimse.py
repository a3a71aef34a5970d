"""docs/sources/dimse.md, run as written against Orthanc's DICOM port and dcmtk's dcmqrscp."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.dicomgen import StudySpec, make_study
from support.dimse_fixtures import _require
from support.dimse_peers import Dcmqrscp, OrthancDimse, dcmtk_available
from support.orthanc import ensure_installed
from support.ports import free_port

DOC = Path(__file__).resolve().parents[1] / "docs/sources/dimse.md"
LEE = StudySpec("doc-dimse-lee", patient_name="LEE^ANNA^K", patient_id="PAT0001", modality="MR",
                study_date="20190412", description="MR BRAIN", n_series=2, n_instances=2)  # fmt: skip
OTHER = StudySpec("doc-dimse-other", patient_name="LEE^ANNA^KATE", patient_id="PAT0002", modality="CT",
                  study_date="20210101", description="CT CHEST", n_instances=1)  # fmt: skip


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def block(language: str, marker: str) -> str:
    return next(b for b in blocks(language) if marker in b)


def datasources(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("datasources")
    assert exe, "the datasources script is not installed"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_every_configuration_key_is_documented() -> None:
    from datasources_default.dimse import config

    text = DOC.read_text(encoding="utf-8")
    keys = [*config._TOP, *config._TIMEOUTS, *config._TLS, *config._CACHE]
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"not in docs/sources/dimse.md: {missing}"


class DocOrthanc(OrthancDimse):
    """Orthanc with the DICOM settings of the docs page (ports made free ones)."""

    def config(self) -> dict[str, Any]:
        config = super().config()
        documented = json.loads(block("json", "DicomServerEnabled"))
        documented["DicomPort"] = self.dicom_port
        documented["DicomModalities"]["datasources"]["Port"] = self.storage_port
        config.update(documented)
        return config


def test_the_orthanc_example_runs_as_written(tmp_path: Path) -> None:
    _require(ensure_installed(), "DATASOURCES_REQUIRE_ORTHANC", "Orthanc with its DICOMweb plugin is not installed")
    lee, other = make_study(LEE), make_study(OTHER)
    with DocOrthanc(folder=tmp_path / "orthanc") as server:
        server.upload(lee + other)
        config = block("yaml", "sourceName: pacs").replace("port: 4242", f"port: {server.dicom_port}")
        (tmp_path / "pacs.yaml").write_text(config)
        lines = block("bash", "datasources studies").splitlines()
        commands = [line for line in lines if line.startswith("datasources")]
        assert len(commands) == 4
        for command in commands:
            argv = shlex.split(command.replace("<StudyInstanceUID>", LEE.study_uid))
            result = datasources(argv[1:], tmp_path)
            assert result.returncode == 0, (command, result.stderr)
            found = set(re.findall(r"2\.25\.\d+", result.stdout))
            if argv[1] == "sources":
                assert "pacs" in result.stdout
            elif argv[1] == "studies":
                assert found == {LEE.study_uid}, result.stdout  # LEE^ANNA^KATE is out of the date range
            elif argv[1] == "series":
                assert {ds.SeriesInstanceUID for ds in lee} <= found
            else:
                assert all(ds.SOPInstanceUID in result.stdout for ds in lee)
        ran = subprocess.run([sys.executable, "-c", block("python", "Host(")], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        health, line = ran.stdout.splitlines()
        image_id, length, ts = line.split()
        assert health == "True" and image_id.startswith(f"dimse:{LEE.study_uid}/")
        assert int(length) == 16 * 16 * 2 and ts == "1.2.840.10008.1.2.1"
        assert list((tmp_path / "dimse-cache" / "instances").rglob("*.dcm"))


def test_the_dcmtk_example_runs_as_written(tmp_path: Path) -> None:
    _require(dcmtk_available(), "DATASOURCES_REQUIRE_DCMTK", "dcmtk's dcmqrscp is not installed")
    port = free_port()
    db = tmp_path / "dcmqrscp-db"
    db.mkdir()
    text = block("text", "AETable BEGIN").replace("11112", str(port)).replace("./dcmqrscp-db", str(db))

    class DocDcmqrscp(Dcmqrscp):
        def config_text(self) -> str:
            return text

    server = DocDcmqrscp()
    server.port = port
    with server:
        assert server.upload(make_study(LEE) + make_study(OTHER)) == [0] * 5
        config = block("yaml", "sourceName: dcmtk").replace("port: 11112", f"port: {port}")
        (tmp_path / "dcmtk.yaml").write_text(config)
        result = datasources(["studies", "-c", "dcmtk.yaml", "PatientName=LEE^ANNA*", "ModalitiesInStudy=MR"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert set(re.findall(r"2\.25\.\d+", result.stdout)) == {LEE.study_uid}
