"""Three ``datasources index`` processes started together on one folder: no file is reported as
a duplicate of itself, every run succeeds, and the index holds each instance once."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

from support.dicomgen import StudySpec, make_study, write_datasets


def test_concurrent_index_runs_report_no_file_as_its_own_duplicate(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for n in range(3):
        write_datasets(make_study(StudySpec(f"idx-race-{n}", n_series=2, n_instances=20)), root / f"s{n}")
    exe = shutil.which("datasources")
    assert exe, "the datasources script is not installed"
    runs = [
        subprocess.Popen([exe, "index", str(root), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    reports = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err.decode()
        reports.append(json.loads(out))
    reasons = [s["reason"] for report in reports for s in report["skipped"]]
    assert not [r for r in reasons if "duplicate" in r], reasons
    assert all((r["studies"], r["instances"]) == (3, 120) for r in reports), [
        (r["studies"], r["instances"]) for r in reports
    ]
    assert sum(len(r["indexed"]) for r in reports) == 120  # each file indexed by exactly one run
    with sqlite3.connect(root / ".datasources-index.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT sop_uid) FROM instances").fetchone() == (120, 120)
    again = subprocess.run([exe, "index", str(root), "--json"], capture_output=True, check=True)
    assert json.loads(again.stdout)["unchanged"] == 120
