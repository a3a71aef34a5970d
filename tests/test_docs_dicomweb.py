"""docs/sources/dicomweb.md, run as written against a real Orthanc, and checked for every configuration key."""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.dicomgen import StudySpec, make_study, write_datasets

DOC = Path(__file__).resolve().parents[1] / "docs/sources/dicomweb.md"
DOC_URL = "http://127.0.0.1:8042"
LEE = StudySpec("doc-dicomweb-lee", patient_name="LEE^ANNA^K", patient_id="PAT0001", study_date="20190412",
                description="CT CHEST W/O CONTRAST", n_series=2, n_instances=2)  # fmt: skip
# near misses: each would be found by a sloppier search (substring, unanchored, wrong date, no ^)
OTHERS = [
    StudySpec("doc-dicomweb-lee-b", patient_name="LEE^ANNA^KATE", patient_id="PAT0002", study_date="20190412",
              description="CT CHEST W/O CONTRAST", n_instances=1),
    StudySpec("doc-dicomweb-old", patient_name="LEE^ANNA^K", patient_id="PAT0001", study_date="19990101",
              description="CT CHEST W/O CONTRAST", n_instances=1),
    StudySpec("doc-dicomweb-abd", patient_name="GARCIA^JOSE", patient_id="PAT0003", study_date="20200105",
              description="CT ABDOMEN, NOT CT CHEST", n_instances=1),
]  # fmt: skip


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def block(language: str, marker: str) -> str:
    return next(b for b in blocks(language) if marker in b)


def datasources(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("datasources")
    assert exe, "the datasources script is not installed"
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_every_configuration_key_is_documented() -> None:
    from datasources_default.dicomweb import config

    text = DOC.read_text(encoding="utf-8")
    keys = [*config._TYPES, *config._REQUEST_OPTIONS, *config._IGNORED]
    keys += ["enabled", "startsWith", "prefixWith", "relativeResolution", "transform"]  # bulkDataURI
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"not in docs/sources/dicomweb.md: {missing}"


def test_the_orthanc_example_runs_as_written(orthanc_empty: Any, tmp_path: Path) -> None:
    lee = make_study(LEE)
    others = [ds for spec in OTHERS for ds in make_study(spec)]
    dicom = tmp_path / "dicom"
    write_datasets(lee[2:] + others, dicom / "more")
    (dicom / "a.dcm").write_bytes(write_datasets([lee[0]], tmp_path / "tmp-a")[0].read_bytes())
    (dicom / "b.dcm").write_bytes(write_datasets([lee[1]], tmp_path / "tmp-b")[0].read_bytes())
    config = block("yaml", "sourceName: orthanc").replace(DOC_URL, orthanc_empty.url)
    (tmp_path / "orthanc.yaml").write_text(config)

    commands = [line for line in block("bash", "datasources store").splitlines() if line.startswith("datasources")]
    assert len(commands) == 5
    total = len(lee) + len(others)
    for command in commands:
        argv = shlex.split(command.replace("<StudyInstanceUID>", LEE.study_uid))
        result = datasources(argv[1:], tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        if argv[1] == "store":
            assert f"{total} of {total} instances stored in orthanc" in result.stdout
        elif argv[1] == "studies":
            # exact answers: LEE^ANNA^K is not LEE^ANNA^KATE, CT CHEST* is a prefix, the date a range
            uids = set(re.findall(r"2\.25\.\d+", result.stdout))
            if "PatientName" in command:
                assert uids == {LEE.study_uid, OTHERS[1].study_uid}, (command, result.stdout)
            else:
                assert uids == {LEE.study_uid, OTHERS[0].study_uid}, (command, result.stdout)
        elif argv[1] == "series":
            assert {ds.SeriesInstanceUID for ds in lee} <= set(re.findall(r"2\.25\.\d+", result.stdout))
        else:
            assert all(ds.SOPInstanceUID in result.stdout for ds in lee)
            assert all(ds.SOPInstanceUID not in result.stdout for ds in others)

    script = block("python", "ds.store.dicom([").replace(DOC_URL, orthanc_empty.url)
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert len(lines) == 5, ran.stdout
    assert lines[0] == "2 stored []"
    assert sorted(lines[1:4]) == sorted(f"{s.study_uid} {s.patient_name}" for s in (LEE, OTHERS[0], OTHERS[1]))
    image_id, frame_length = lines[-1].split()
    assert image_id.startswith(f"wadors:{orthanc_empty.dicomweb_url}/studies/") and image_id.endswith("/frames/1")
    assert int(frame_length) == len(lee[0].PixelData) // int(getattr(lee[0], "NumberOfFrames", 1) or 1)

    namespace: dict[str, Any] = {}
    exec(block("python", "create_dicomweb_api").replace(DOC_URL, orthanc_empty.url), namespace)
    assert {r["StudyInstanceUID"] for r in namespace["rows"]} == {LEE.study_uid, *(s.study_uid for s in OTHERS)}


def test_the_authenticated_example(orthanc_basic_auth: Any, tmp_path: Path) -> None:
    server = orthanc_basic_auth
    config = block("yaml", "sourceName: pacs").replace("https://pacs.example.org", server.url)
    (tmp_path / "pacs.yaml").write_text(config)
    command = next(line for line in block("bash", "PACS_USER").splitlines() if line.startswith("datasources"))
    argv = shlex.split(command)[1:]
    lee = make_study(LEE)
    server.upload(lee[:1])
    try:
        right = datasources(argv, tmp_path, {"PACS_USER": server.user, "PACS_PASSWORD": server.password})
        assert right.returncode == 0, right.stderr
        assert LEE.study_uid in right.stdout

        wrong_password = f"not-{server.password}"
        wrong = datasources(argv, tmp_path, {"PACS_USER": server.user, "PACS_PASSWORD": wrong_password})
        assert wrong.returncode == 1 and "401" in wrong.stderr
        encoded = base64.b64encode(f"{server.user}:{wrong_password}".encode()).decode()
        for secret in (wrong_password, encoded):
            assert secret not in wrong.stdout + wrong.stderr

        env = {k: v for k, v in os.environ.items() if k not in ("PACS_USER", "PACS_PASSWORD")}
        exe = shutil.which("datasources")
        assert exe
        unset = subprocess.run([exe, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
        assert unset.returncode != 0 and "PACS_USER" in unset.stderr
    finally:
        server.clear()  # shared and expected empty by other tests


@pytest.mark.parametrize("key", ["supportsWildcard", "requestOptions"])
def test_documented_type_errors_name_the_key(key: str) -> None:
    from datasources.errors import ConfigurationError
    from datasources_default.dicomweb import create_dicomweb_api

    with pytest.raises(ConfigurationError, match=key):
        create_dicomweb_api({"wadoRoot": DOC_URL + "/dicom-web", key: "yes"})
