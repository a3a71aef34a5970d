"""``datasources index PATH``: the summary, --json, --cache, --strict and the exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from datasources.cli import main
from support.dicomgen import StudySpec, make_study, write_datasets


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_datasets(make_study(StudySpec("cli-index-a", "LEE^ANNA", n_series=2, n_instances=2)), root / "a")
    write_datasets(make_study(StudySpec("cli-index-b", "DOE^JOHN", modality="MR", n_instances=1)), root / "b")
    (root / "readme.txt").write_text("not DICOM")
    return root


def test_summary_then_nothing_to_do(capsys: pytest.CaptureFixture[str], folder: Path) -> None:
    code, out, err = run(capsys, "index", str(folder))
    assert code == 0, err
    assert f"Indexed {folder}" in out
    assert "new        5" in out and "skipped    1" in out
    assert "now 2 studies, 5 instances" in out
    assert "readme.txt: not a DICOM file" in out
    assert (folder / ".datasources-index.sqlite").is_file()

    code, out, _ = run(capsys, "index", str(folder))
    assert code == 0
    assert "new        0" in out and "unchanged  6" in out


def test_json_lists_each_change(capsys: pytest.CaptureFixture[str], folder: Path) -> None:
    run(capsys, "index", str(folder))
    gone = next((folder / "b").glob("*.dcm"))
    gone.unlink()
    write_datasets(make_study(StudySpec("cli-index-c", n_instances=1)), folder / "c")
    code, out, _ = run(capsys, "index", str(folder), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["removed"] == [f"b/{gone.name}"]
    assert len(report["indexed"]) == 1 and report["indexed"][0].startswith("c/")
    assert report["read"] == 1 and report["unchanged"] == 5
    assert report["skipped"] == [{"path": "readme.txt", "reason": "not a DICOM file (no DICM marker)"}]
    assert (report["studies"], report["instances"]) == (2, 5)


def test_verbose_lists_files(capsys: pytest.CaptureFixture[str], folder: Path) -> None:
    code, out, _ = run(capsys, "index", str(folder), "--verbose")
    assert code == 0
    assert sum(line.strip().startswith("new: ") for line in out.splitlines()) == 5


def test_cache_folder(capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    code, out, _ = run(capsys, "index", str(folder), "--cache", str(cache), "--json")
    assert code == 0
    index_file = Path(json.loads(out)["indexFile"])
    assert index_file.parent == cache and index_file.is_file()
    assert not (folder / ".datasources-index.sqlite").exists()
    # a dicomlocal source configured with the same cache finds the work done
    from datasources import Host

    host = Host.from_config(
        {
            "dataSources": [
                {
                    "namespace": "default.dataSourcesModule.dicomlocal",
                    "sourceName": "local",
                    "configuration": {"root": str(folder), "cache": str(cache)},
                }
            ]
        }
    )
    ds = host.get_data_source("local")
    assert len(ds.query.studies.search()) == 2
    assert ds.helpers.last_report().read == []


def test_strict_fails_on_skipped_files(capsys: pytest.CaptureFixture[str], folder: Path) -> None:
    code, _, err = run(capsys, "index", str(folder), "--strict")
    assert code == 1
    assert "1 file(s) skipped" in err
    (folder / "readme.txt").unlink()
    code, _, _ = run(capsys, "index", str(folder), "--strict")
    assert code == 0


def test_links_are_reported_not_followed(capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_datasets(make_study(StudySpec("cli-index-out", n_instances=1)), outside)
    os.symlink(outside, folder / "elsewhere")
    code, out, _ = run(capsys, "index", str(folder), "--json")
    assert code == 0
    reasons = {s["path"]: s["reason"] for s in json.loads(out)["skipped"]}
    assert "symbolic link" in reasons["elsewhere"]
    code, out, _ = run(capsys, "index", str(folder), "--json", "--follow-symlinks")
    assert code == 0
    reasons = {s["path"]: s["reason"] for s in json.loads(out)["skipped"]}
    assert "outside the root" in reasons["elsewhere"]


def test_no_recursive(capsys: pytest.CaptureFixture[str], folder: Path) -> None:
    code, out, _ = run(capsys, "index", str(folder), "--no-recursive", "--json")
    assert code == 0
    assert json.loads(out)["instances"] == 0


@pytest.mark.parametrize("make", ["missing", "file"])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, make: str) -> None:
    target = tmp_path / "target"
    if make == "file":
        target.write_text("x")
    code, out, err = run(capsys, "index", str(target))
    assert code == 2
    assert out == ""
    assert "target" in err


def test_unusable_cache_exits_1(capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    code, out, err = run(capsys, "index", str(folder), "--cache", str(blocker / "cache"))
    assert code == 1
    assert "cannot create the index" in err and "Traceback" not in err
    assert out == ""
