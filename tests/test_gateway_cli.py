"""``datasources serve`` as a user runs it: a real process, a real port, the token from the environment."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from datasources.cli.serve import _is_loopback

TOKEN = "cli-S3cret-token-4a7f91"
LEE_CT = "2.25.149445395880599934171435059992354054150"


class Running:
    """A ``datasources serve`` process whose output goes to files (a pipe read line by line and
    then by ``communicate`` loses what the line reader had buffered)."""

    def __init__(self, process: subprocess.Popen[bytes], out: Path, err: Path, url: str) -> None:
        self.process = process
        self.out = out
        self.err = err
        self.url = url

    def stop(self) -> tuple[str, str]:
        """SIGTERM, wait, and everything it printed: ``(stdout, stderr)``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(15)
        return self.out.read_text(), self.err.read_text()


def _exe() -> str:
    exe = shutil.which("datasources")
    assert exe, "the datasources script is not installed"
    return exe


@contextmanager
def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [_exe(), "serve", "--port", "0", *args], stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})}
        )
    try:
        deadline = time.monotonic() + 30
        while not out.read_text().endswith("\n"):
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        first = out.read_text().splitlines()[0]
        assert first.startswith("datasources gateway on http://127.0.0.1:"), first
        url = first.split()[3]
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/favicon.ico", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield Running(process, out, err, url)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def test_serve_with_a_token_from_the_environment(tmp_path: Path) -> None:
    with serve(
        tmp_path, "--token-env", "GATEWAY_TEST_TOKEN", "--log-level", "debug", env={"GATEWAY_TEST_TOKEN": TOKEN}
    ) as running:
        url = running.url
        assert requests.get(f"{url}/dicom-web/studies", timeout=10).status_code == 401
        wrong = requests.get(f"{url}/dicom-web/studies", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401 and "invalid_token" in wrong.headers["WWW-Authenticate"]
        good = requests.get(f"{url}/sample/dicom-web/studies", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert good.status_code == 200 and len(good.json()) == 6
        failing = requests.get(
            f"{url}/dicom-web/studies/{LEE_CT}/series/1.2/metadata",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert failing.status_code == 404
        stdout, stderr = running.stop()
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as a well-behaved server does
    assert running.process.returncode in (0, -signal.SIGTERM)
    assert "Finished server process" in stderr
    everything = stdout + stderr
    assert "GET /sample/dicom-web/studies" in everything  # the access log is there...
    assert TOKEN not in everything  # ...and the token is nowhere in it
    assert "$GATEWAY_TEST_TOKEN" in everything  # the banner names the variable, not its value


def test_a_token_variable_that_is_not_set_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_UNSET_TOKEN"}
    done = subprocess.run(
        [_exe(), "serve", "--port", "0", "--token-env", "GATEWAY_UNSET_TOKEN"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2 and "GATEWAY_UNSET_TOKEN" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(
        [_exe(), "serve", "--port", "0", "--source", "nosuch"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "'nosuch'" in done.stderr and "Traceback" not in done.stderr
    options = {word.strip(",") for word in _help().split() if word.startswith("--")}
    assert "--token-env" in options and "--token" not in options  # never the token itself on a command line


def _help() -> str:
    done = subprocess.run([_exe(), "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    return done.stdout


def test_sources_cors_and_public_url(tmp_path: Path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text(
        "dataSources:\n"
        "  - namespace: default.dataSourcesModule.dicomjson\n"
        "    sourceName: one\n"
        "    configuration: {bundled: sample}\n"
        "  - namespace: default.dataSourcesModule.dicomjson\n"
        "    sourceName: two\n"
        "    configuration: {bundled: sample}\n"
        "defaultDataSourceName: one\n"
    )
    args = ["-c", str(config), "--source", "two", "--cors", "http://localhost:3000"]
    with serve(tmp_path, *args, "--public-url", "https://pacs.example.org/gw/") as running:
        url = running.url
        assert requests.get(f"{url}/one/dicom-web/studies", timeout=10).status_code == 404
        rows = requests.get(f"{url}/dicom-web/studies", timeout=10).json()
        assert rows[0]["00081190"]["Value"][0].startswith("https://pacs.example.org/gw/dicom-web/studies/")
        preflight = requests.options(
            f"{url}/two/dicom-web/studies",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
            timeout=10,
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        stdout, _ = running.stop()
    assert "two: http://127.0.0.1:" in stdout and "one:" not in stdout


def test_loopback_detection() -> None:
    assert all(_is_loopback(a) for a in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(_is_loopback(a) for a in ("0.0.0.0", "::", "192.168.1.10", "example.org"))
