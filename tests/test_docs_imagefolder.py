"""docs/sources/imagefolder.md, run as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs/sources/imagefolder.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "make_dataset.py").write_text(blocks("python")[0])
    (tmp_path / "images.yaml").write_text(blocks("yaml")[0])
    exe = shutil.which("datasources")
    assert exe
    commands = [line for line in blocks("bash")[1].splitlines() if line.strip()]
    results = []
    for command in commands:
        argv = command.replace("'DOE*'", "DOE*").split()
        program = [sys.executable, *argv[1:]] if argv[0] == "python" else [exe, *argv[1:]]
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # a wide table, as in a pipe
        result = subprocess.run(program, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 0, (command, result.stderr)
        results.append(result)
    listing = results[1]
    assert "DOE^JANE" in listing.stdout and "ROE^RICHARD" in listing.stdout and "NOBODY" not in listing.stdout
    assert "line 4: unknown modality 'XRAY'" in listing.stderr
    found = json.loads(results[2].stdout)
    assert [row["PatientID"] for row in found] == ["P1"]
