"""The command line: output, --json, and one-line errors with non-zero exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from datasources.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_studies_table_lists_the_bundled_sample(
    capsys: pytest.CaptureFixture[str], sample_document: dict[str, Any]
) -> None:
    code, out, err = run(capsys, "studies")
    assert code == 0, err
    assert "Studies in sample (6)" in out
    for study in sample_document["studies"]:
        assert study["StudyInstanceUID"] in out


def test_studies_json_with_filters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "studies", "PatientName=LEE*", "StudyDate=20200101-", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["StudyDescription"] for r in rows] == ["MR BRAIN W/WO CONTRAST"]


def test_limit_offset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "studies", "--limit", "2", "--offset", "1", "--json")
    assert code == 0 and len(json.loads(out)) == 2


def test_series_and_metadata(capsys: pytest.CaptureFixture[str], sample_document: dict[str, Any]) -> None:
    study = sample_document["studies"][0]
    code, out, _ = run(capsys, "series", study["StudyInstanceUID"], "--json")
    assert code == 0
    assert [s["SeriesInstanceUID"] for s in json.loads(out)] == [s["SeriesInstanceUID"] for s in study["series"]]
    series_uid = study["series"][1]["SeriesInstanceUID"]
    code, out, _ = run(capsys, "metadata", study["StudyInstanceUID"], "--series", series_uid, "--json")
    assert code == 0
    data = json.loads(out)
    assert [s["SeriesInstanceUID"] for s in data["series"]] == [series_uid]
    assert len(data["series"][0]["instances"]) == len(study["series"][1]["instances"])
    code, out, _ = run(capsys, "metadata", study["StudyInstanceUID"])
    assert code == 0 and "AXIAL 5MM" in out and "SOPInstanceUID" in out


def test_sources_and_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sources", "--json")
    assert code == 0
    assert json.loads(out)[0]["sourceName"] == "sample"
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    names = {e["name"] for e in json.loads(out)["extensions"]}
    assert {"default", "testext"} <= names
    code, out, _ = run(capsys, "plugins")
    assert code == 0 and "default.dataSourcesModule.dicomjson" in out


@pytest.mark.parametrize(
    ("args", "message", "exit_code"),
    [
        # a filter typed on the command line is a usage error (exit 2), as click's own are
        (["studies", "patientname=LEE*"], "PatientName", 2),
        (["studies", "NoSuchKeyword=1"], "NoSuchKeyword", 2),
        (["studies", "novalue"], "is not of the form Keyword=value", 2),
        (["studies", "--source", "nope"], "no data source named 'nope'; configured sources: 'sample'", 1),
        (["series", "9.9.9"], "9.9.9", 1),
        (["studies", "--config", "/nonexistent/app.yaml"], "does not exist", 1),
        (["studies", "--limit", "-3"], "limit", 2),
    ],
)
def test_errors_are_one_line_and_non_zero(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str, exit_code: int
) -> None:
    code, out, err = run(capsys, *args)
    assert code == exit_code
    assert message in err.replace("\n", " ")
    assert "Traceback" not in err and "Traceback" not in out
    assert err.startswith("error:")


def test_config_error_in_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "app.json"
    bad.write_text('{"dataSources": [{"namespace": "x.dataSourcesModule.y", "sourceName": "s"}]}')
    code, _, err = run(capsys, "studies", "--config", str(bad))
    assert code == 1
    assert "unknown data source namespace 'x.dataSourcesModule.y'" in err


def test_console_script_is_installed() -> None:
    exe = shutil.which("datasources")
    assert exe, "the datasources console script is not on PATH"
    result = subprocess.run([exe, "studies", "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 6
    bad = subprocess.run([exe, "studies", "--source", "x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_a_failing_merge_member_is_a_warning_not_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    config = {
        "defaultDataSourceName": "merged",
        "dataSources": [
            {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "sample",
             "configuration": {"bundled": "sample"}},
            {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "gone",
             "configuration": {"path": str(tmp_path / "missing.json")}},
            {"namespace": "default.dataSourcesModule.merge", "sourceName": "merged",
             "configuration": {"seriesMerge": {"dataSourceNames": ["sample", "gone"]}}},
        ],
    }  # fmt: skip
    path = tmp_path / "app.json"
    path.write_text(json.dumps(config))
    code, out, err = run(capsys, "studies", "--config", str(path), "--json")
    assert code == 0 and len(json.loads(out)) == 6
    lines = [line for line in err.splitlines() if "gone" in line]
    assert len(lines) == 1, err  # said once, not by the source and again by the command
    assert lines[0].startswith("warning: merge source 'merged': member 'gone' failed")
    assert "NotFoundError" in lines[0] and "missing.json" in lines[0]


def test_dicomjson_bulk_data_takes_the_mapping_too(sample_document: dict[str, Any]) -> None:
    from datasources import Host

    ds = Host().get_data_source("sample")
    pixel = sample_document["studies"][0]["series"][0]["instances"][0]["metadata"]["PixelData"]
    assert ds.retrieve.bulk_data_uri(pixel) == ds.retrieve.bulk_data_uri(pixel["BulkDataURI"])
