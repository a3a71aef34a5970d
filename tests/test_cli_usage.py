"""The installed ``datasources`` script over the usage mistakes a new user makes: exit code, one line, no traceback.

Each case runs the console script in a subprocess, as a user types it, so what is checked is
what the user sees (typer's own click, the entry point, warnings, the interpreter's exit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

EXE = shutil.which("datasources")
COMMANDS = ("plugins", "sources", "studies", "series", "metadata", "store", "index", "serve", "export static-wado")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert EXE, "the datasources console script is not installed"
    environ = {k: v for k, v in os.environ.items() if k != "DATASOURCES_DEBUG"}
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=60, env={**environ, **(env or {})}, cwd=cwd
    )


# (arguments, exit code, text the one error line must hold)
MISTAKES = [
    (["frobnicate"], 2, "No such command 'frobnicate'"),
    (["studies", "--bogus"], 2, "No such option: --bogus"),
    (["--bogus", "studies"], 2, "No such option: --bogus"),
    (["studies", "--limit", "abc"], 2, "'--limit'"),
    (["studies", "--limit", "-3"], 2, "limit"),
    (["studies", "--offset", "1.5"], 2, "'--offset'"),
    (["studies", "StudyDate=notadate"], 2, "StudyDate: 'notadate' is not a date"),
    (["studies", "StudyDate=2020-01-01-x"], 2, "StudyDate: '2020-01-01-x'"),
    (["studies", "StudyDate=20201301"], 2, "StudyDate: '20201301'"),
    (["studies", "startDate=notadate"], 2, "startDate: 'notadate' is not a date"),
    (["studies", "StudyTime=2599"], 2, "StudyTime: '2599' is not a time"),
    (["studies", "StudyInstanceUID=abc"], 2, "StudyInstanceUID: 'abc' is not a UID"),
    (["studies", "NumberOfStudyRelatedInstances=seven"], 2, "NumberOfStudyRelatedInstances: 'seven'"),
    (["studies", "patientname=LEE*"], 2, "did you mean 'PatientName'"),
    (["studies", "novalue"], 2, "is not of the form Keyword=value"),
    (["studies", "-v", "loud"], 2, "'--log-level'"),
    (["--log-level", "loud", "studies"], 2, "'--log-level'"),
    (["--config", "x.yaml", "studies"], 1, "configuration file 'x.yaml' does not exist"),
    (["-c", "x.yaml", "sources"], 1, "configuration file 'x.yaml' does not exist"),
    (["studies", "-c", "x.yaml"], 1, "configuration file 'x.yaml' does not exist"),
    (["studies", "--source", "nope"], 1, "no data source named 'nope'"),
    (["series"], 2, "Missing argument"),
    (["series", "9.9.9"], 1, "study '9.9.9' was not found in data source 'sample'"),
    (["metadata", "9.9.9"], 1, "9.9.9"),
    (["store"], 2, "Missing argument"),
    (["store", "/nonexistent/file.dcm"], 2, "/nonexistent/file.dcm"),
    (["index", "/nonexistent"], 2, "/nonexistent"),
    (["index", "--cache"], 2, "--cache"),
    (["serve", "--port", "abc"], 2, "'--port'"),
    (["serve", "--port", "70000"], 2, "'--port'"),
    (["plugins", "extra"], 2, "unexpected extra argument"),
    (["export", "frobnicate"], 2, "No such command 'frobnicate'"),
    (["export", "static-wado", "--bogus"], 2, "No such option: --bogus"),
    (["export", "static-wado", "out", "-v", "loud"], 2, "'--log-level'"),
]


HELPS = [[*command.split(), "-h"] for command in COMMANDS] + [["studies", "--help"], ["serve", "--help"]]


@pytest.fixture(scope="module")
def ran() -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Every case of the tables below, run a few at a time (each is a fresh interpreter)."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [tuple(m[0]) for m in MISTAKES] + [tuple(h) for h in HELPS]
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(cases, pool.map(lambda args: run(*args), cases), strict=True))


@pytest.mark.parametrize(("args", "code", "text"), MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_a_mistake_is_one_line_and_its_exit_code(ran: dict, args: list[str], code: int, text: str) -> None:
    result = ran[tuple(args)]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and text in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "/plugins/default/" not in lines[0]  # sources are named by sourceName, never by a server path


@pytest.mark.parametrize("args", [[], ["export"]], ids=["datasources", "datasources export"])
def test_a_bare_group_shows_the_help_and_exits_2(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    shown = result.stdout + result.stderr
    assert f"Usage: datasources {' '.join(args)}".strip() in shown and "Traceback" not in shown
    assert "error:" not in result.stderr  # the help is the answer, not an empty error line


@pytest.mark.parametrize("args", HELPS, ids=[" ".join(h) for h in HELPS])
def test_help_and_the_global_options_on_every_command(ran: dict, args: list[str]) -> None:
    command = " ".join(args[:-1])
    result = ran[tuple(args)]
    assert result.returncode == 0, result.stderr
    assert f"Usage: datasources {command}" in result.stdout
    for option in ("--log-level", "-v", "--debug", "--help", "-h"):
        assert option in result.stdout, (command, option)
    if command not in ("plugins", "index"):  # the commands that read a configuration
        assert "--config" in result.stdout and "-c" in result.stdout


def test_version_and_completion() -> None:
    from importlib.metadata import version

    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"datasources {version('datasources')}")
    assert "--install-completion" in run("--help").stdout
    completed = run(env={"_DATASOURCES_COMPLETE": "complete_bash", "COMP_WORDS": "datasources stu", "COMP_CWORD": "1"})
    assert completed.returncode == 0 and completed.stdout.split() == ["studies"]


def test_config_before_or_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "app.json"
    config.write_text(
        json.dumps(
            {
                "dataSources": [
                    {
                        "namespace": "default.dataSourcesModule.dicomjson",
                        "sourceName": "mine",
                        "configuration": {"bundled": "sample"},
                    }
                ]
            }
        )
    )
    for args in (
        ["-c", str(config), "studies"],
        ["studies", "--config", str(config)],
        ["--config", str(config), "sources"],
    ):
        result = run(*args, "--json")
        assert result.returncode == 0, result.stderr
        assert "mine" in result.stdout or len(json.loads(result.stdout)) == 6
    # given both ways, the one after the command wins
    result = run("-c", str(tmp_path / "absent.json"), "sources", "-c", str(config), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)[0]["sourceName"] == "mine"


def test_an_unknown_configuration_key_is_one_warning_line(tmp_path: Path) -> None:
    config = tmp_path / "app.json"
    entry = {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "j"}
    config.write_text(json.dumps({"dataSources": [{**entry, "configuration": {"bundled": "sample", "bogusKey": 1}}]}))
    result = run("studies", "-c", str(config), "--json")
    assert result.returncode == 0
    assert result.stderr.strip().splitlines() == ["warning: dicomjson: unknown configuration keys ['bogusKey']"]
    assert len(json.loads(result.stdout)) == 6


def test_debug_lets_the_traceback_through(tmp_path: Path) -> None:
    bad = tmp_path / "app.json"
    bad.write_text("{not json")
    quiet = run("studies", "-c", str(bad))
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert len(quiet.stderr.strip().splitlines()) == 1
    for loud in (
        run("studies", "-c", str(bad), "--debug"),
        run("studies", "-c", str(bad), env={"DATASOURCES_DEBUG": "1"}),
    ):
        assert loud.returncode != 0


def test_log_level_shows_the_library_logs() -> None:
    quiet = run("studies", "--json")
    loud = run("studies", "--json", "-v", "debug")
    assert quiet.returncode == loud.returncode == 0
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout) == json.loads(loud.stdout)


@pytest.mark.parametrize("args", [["studies"], ["studies", "--json"], ["plugins"]])
def test_a_closed_pipe_exits_quietly(args: list[str]) -> None:
    assert EXE
    process = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line is written, as with `| head -0`
    deadline = time.monotonic() + 60
    while process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    err = process.stderr.read().decode()
    assert process.returncode in (0, 141), err
    assert err == ""
