"""docs/export.md, run as written: its commands, its Python example, then the tree served and read back."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
from support.ports import free_port

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs/export.md"
LEE_CT = "2.25.149445395880599934171435059992354054150"


def blocks(language: str, doc: Path = DOC) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)


def run(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("datasources")
    assert exe
    argv = line.split("#", 1)[0].replace("'LEE*'", "LEE*").replace("<StudyInstanceUID>", LEE_CT).split()
    return subprocess.run([exe, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_commands_run_as_written(tmp_path: Path) -> None:
    lines = [line for line in blocks("bash")[1].splitlines() if line.startswith("datasources")]
    assert len(lines) == 4
    results = [run(line, tmp_path) for line in lines]
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert "6 written" in results[0].stdout
    assert "2 unchanged" in results[1].stdout  # the LEE studies were exported by the first line
    summary = json.loads(results[2].stdout)
    assert summary["unchanged"] == 6 and summary["failed"] == 0 and summary["studies"][0]["status"] == "unchanged"
    rows = orjson.loads(gzip.decompress((tmp_path / "site/studies/index.json.gz").read_bytes()))
    assert len(rows) == 6


def test_the_python_example_runs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", blocks("python")[0]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["2 studies written", "2 studies unchanged"]
    assert (tmp_path / "site/studies" / LEE_CT / "export.json").is_file()


def test_the_tree_served_with_the_static_wado_script_reads_back(tmp_path: Path) -> None:
    assert run("datasources export static-wado ./site", tmp_path).returncode == 0
    script = tmp_path / "serve_static.py"
    script.write_text(next(b for b in blocks("python", REPO / "docs/sources/static-wado.md") if "HTTPServer" in b))
    config = json.loads(blocks("json")[0])
    port = free_port()
    for key in ("wadoRoot", "qidoRoot"):
        config["configuration"][key] = config["configuration"][key].replace(":8000", f":{port}")
    (tmp_path / "site.json").write_text(json.dumps({"dataSources": [config]}))
    server = subprocess.Popen([sys.executable, str(script), str(tmp_path / "site"), str(port)])
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and server.poll() is None, "the documented server did not start"
            time.sleep(0.05)
        studies, metadata = (run(line, tmp_path) for line in blocks("bash")[2].splitlines() if line)
        assert studies.returncode == 0 and metadata.returncode == 0, (studies.stderr, metadata.stderr)
        assert LEE_CT in studies.stdout and "2.25.28884" in studies.stdout  # both LEE studies
        series = json.loads(metadata.stdout)["series"]
        assert sum(len(s["instances"]) for s in series) == 7
        assert all(i["imageId"].startswith(f"wadors:http://127.0.0.1:{port}/") for s in series for i in s["instances"])
    finally:
        server.kill()
        server.wait()
