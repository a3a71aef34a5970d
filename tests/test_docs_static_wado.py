"""docs/sources/static-wado.md, run as written: its server script and its commands."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from support.dicomgen import StudySpec, make_study
from support.ports import free_port
from support.statictree import build_static_tree

DOC = Path(__file__).resolve().parents[1] / "docs/sources/static-wado.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_runs_as_written(tmp_path: Path) -> None:
    spec = StudySpec("doc-static", patient_name="LEE^ANNA^K", n_series=2, n_instances=2)
    datasets = make_study(spec)
    build_static_tree(datasets, tmp_path / "tree")
    expected = {
        "studies": {spec.study_uid},
        "series": {d.SeriesInstanceUID for d in datasets},
        "metadata": {d.SOPInstanceUID for d in datasets},
    }
    script = tmp_path / "serve_static.py"
    script.write_text(next(b for b in blocks("python") if "ThreadingHTTPServer" in b))
    config = json.loads(next(b for b in blocks("json") if "staticWado" in b))  # a whole file, as written
    entry = config["dataSources"][0]
    port = free_port()
    for key in ("wadoRoot", "qidoRoot"):
        entry["configuration"][key] = entry["configuration"][key].replace(":8000", f":{port}")
    (tmp_path / "static.json").write_text(json.dumps(config))
    server = subprocess.Popen([sys.executable, str(script), str(tmp_path / "tree"), str(port)])
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and server.poll() is None, "the documented server did not start"
            time.sleep(0.05)
        exe = shutil.which("datasources")
        assert exe
        commands = [line for line in blocks("bash")[0].splitlines() if line.startswith("datasources")]
        for command in commands:
            argv = command.replace("<StudyInstanceUID>", spec.study_uid).replace("'LEE*'", "LEE*").split()
            result = subprocess.run([exe, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, (command, result.stderr)
            missing = {uid for uid in expected[argv[1]] if uid not in result.stdout}
            assert not missing, (command, missing)
    finally:
        server.kill()
        server.wait()
