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


# -- "Authentication": the token examples, against a real token endpoint and Orthanc behind a token proxy --

EXAMPLE_ROOT = "https://dicom.example.org/dicom-web"
EXAMPLE_TOKEN_URL = "https://login.example.org/oauth2/token"


def test_the_token_provider_examples_run_as_written(orthanc_empty: Any, tmp_path: Path) -> None:
    from support.oauthserver import AuthProxy, TokenServer

    lee = make_study(LEE)
    with TokenServer(lifetime=30) as tokens, AuthProxy(orthanc_empty.url, tokens) as proxy:
        orthanc_empty.upload(lee[:1])
        try:

            def write(marker: str, name: str) -> None:
                text = block("yaml", marker).replace(EXAMPLE_ROOT, f"{proxy.url}/dicom-web")
                (tmp_path / name).write_text(text.replace(EXAMPLE_TOKEN_URL, tokens.token_url))

            # OAuth2 client credentials, the secret from the environment
            tokens.add_client("viewer-service", "svc-Secret-1")
            write("type: oauth2-client-credentials", "cloud.yaml")
            line = next(x for x in block("bash", "DICOM_CLIENT_SECRET").splitlines() if x.startswith("datasources"))
            argv = shlex.split(line)[1:]
            right = datasources(argv, tmp_path, {"DICOM_CLIENT_SECRET": "svc-Secret-1"})
            assert right.returncode == 0, right.stderr
            assert LEE.study_uid in right.stdout and tokens.grants == ["client_credentials"]
            wrong = datasources(argv, tmp_path, {"DICOM_CLIENT_SECRET": "svc-Wrong-1"})
            assert wrong.returncode == 1 and "invalid_client" in wrong.stderr
            assert "svc-Wrong-1" not in wrong.stdout + wrong.stderr

            # a refresh token from a file
            write("type: oauth2-refresh-token", "mine.yaml")
            tokens.add_client("viewer-app", "unused")
            (tmp_path / "refresh-token.txt").write_text(tokens.add_refresh_token("viewer-app") + "\n")
            mine = datasources(["studies", "--config", "mine.yaml", "PatientID=PAT0001"], tmp_path)
            assert mine.returncode == 0, mine.stderr
            assert LEE.study_uid in mine.stdout and tokens.grants[-1] == "refresh_token"
            tokens.revoke_refresh()
            revoked = datasources(["studies", "--config", "mine.yaml"], tmp_path)
            assert revoked.returncode == 1 and "invalid_grant" in revoked.stderr
            assert tokens.token_url in revoked.stderr  # the error names the token endpoint

            # "module:function"
            (tmp_path / "pacs_tokens.py").write_text(block("python", "def pacs_token"))
            write("provider: pacs_tokens:pacs_token", "custom.yaml")
            tokens.add_client("custom-client", "custom-Secret")
            env = {"PYTHONPATH": str(tmp_path), "PACS_TOKEN_URL": tokens.token_url,
                   "PACS_CLIENT_ID": "custom-client", "PACS_CLIENT_SECRET": "custom-Secret"}  # fmt: skip
            issued = tokens.issued
            custom = datasources(["studies", "--config", "custom.yaml", "PatientID=PAT0001"], tmp_path, env)
            assert custom.returncode == 0, custom.stderr
            assert LEE.study_uid in custom.stdout and tokens.issued == issued + 1
            assert not [s for s in proxy.seen if not s.live and s.authorization]  # no stale token was ever sent
        finally:
            orthanc_empty.clear()


def test_the_cloud_examples_are_configured_as_written(tmp_path: Path) -> None:
    import importlib.util

    from datasources import Host
    from datasources.errors import DataSourcesError

    (tmp_path / "clouds.yaml").write_text(block("yaml", "type: google"))
    host = Host.from_config(tmp_path / "clouds.yaml")
    for name, module, extra in (("gcp", "google.auth", "google"), ("azure", "azure.identity", "azure")):
        try:
            present = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            present = False
        ds = host.get_data_source(name)
        assert ds.get_config()["requestOptions"]["auth"]["type"] == extra
        if not present:  # the first request says which extra to install (and sends nothing)
            with pytest.raises(DataSourcesError, match=re.escape(f"pip install 'datasources-default[{extra}]'")):
                ds.query.studies.search()


def test_the_url_token_example_keeps_the_key_on_every_request(fault_server: Any, tmp_path: Path) -> None:
    from datasources import Host
    from support.faultserver import Reply

    line = block("yaml", "?key=${DICOM_API_KEY}").strip()
    root = line.split(": ", 1)[1].replace(EXAMPLE_ROOT, f"{fault_server.url}/dicom-web")
    (tmp_path / "key.yaml").write_text(
        "dataSources:\n  - namespace: default.dataSourcesModule.dicomweb\n    sourceName: k\n"
        f"    configuration:\n      wadoRoot: {root}\n"
    )
    fault_server.script("/dicom-web/studies", Reply.json([]))
    os.environ["DICOM_API_KEY"] = "api-KEY-value"
    try:
        ds = Host.from_config(tmp_path / "key.yaml").get_data_source("k")
    finally:
        del os.environ["DICOM_API_KEY"]
    assert ds.query.studies.search(PatientID="X") == []
    assert ("key", "api-KEY-value") in fault_server.requests[0].params
    assert ("PatientID", "X") in fault_server.requests[0].params
    assert ds.get_config()["wadoRoot"].endswith("?key=***")
