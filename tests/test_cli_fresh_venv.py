"""The README's first install command in a virtual environment of its own, then the first hour's commands.

The suite's own environment has every test dependency (``click`` among them), so a missing
runtime dependency would go unseen there: here only ``pip install -e . -e ./plugins/default``
is installed (build isolation off, with hatchling and editables put in first, so it works offline from the
local package index as well), and the script must still give one line and exit 2 for a usage
error, run a search, and say how to get the gateway. Then docs/gateway.md's install line is
run as written and ``datasources serve`` must be there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _first_install_command() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("pip install -e ."))
    return line.split("&&")[0].split()  # "pip install -e . -e ./plugins/default && datasources studies"


def _gateway_install_command() -> list[str]:
    page = (ROOT / "docs/gateway.md").read_text(encoding="utf-8")
    block = re.search(r"## Install\n.*?```bash\n(.*?)```", page, flags=re.S)
    assert block, "docs/gateway.md has no install block"
    return [word.strip("'") for word in block.group(1).strip().split()]


def _pip(venv: Path, command: list[str]) -> None:
    assert command[:2] == ["pip", "install"], command
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    argv = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-build-isolation", *command[2:]]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_readme_install_alone_gives_a_working_command(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    _pip(venv, ["pip", "install", "hatchling", "editables"])  # the build backend that build isolation would fetch
    _pip(venv, _first_install_command())
    exe = str(venv / "bin/datasources")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DATASOURCES_DEBUG")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)

    for args, code, text in [
        (["frobnicate"], 2, "No such command"),
        (["studies", "--bogus"], 2, "No such option: --bogus"),
        (["--config", "x.yaml", "studies"], 1, "x.yaml"),
        (["studies", "StudyDate=notadate"], 2, "StudyDate"),
        (["studies", "--limit", "abc"], 2, "'--limit'"),
    ]:
        result = run(*args)
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0] and "Traceback" not in result.stderr, (args, result.stderr)
    assert run().returncode == 2
    assert run("series", "-h").returncode == 0
    assert run("--version").stdout.startswith("datasources ")
    found = run("studies")
    assert found.returncode == 0 and "Studies in sample (6)" in found.stdout, found.stderr

    # no gateway extra: the message names it whole (not eaten as rich markup) and says what works here
    serve = run("serve", "--port", "0")
    assert serve.returncode == 1 and "Traceback" not in serve.stderr
    assert "pip install 'datasources[gateway]'" in serve.stderr and "pip install -e '.[gateway]'" in serve.stderr

    # docs/gateway.md's install line, as written, then the gateway is there
    _pip(venv, _gateway_install_command())
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c", "import datasources.gateway.app, uvicorn"], capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    assert run("serve", "-h").returncode == 0
