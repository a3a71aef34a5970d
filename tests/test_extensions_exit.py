"""An extension that calls ``sys.exit()`` or raises any ``BaseException`` (at import or in a hook)
is a load failure like any other; it never ends the host or the CLI (issue 11).

The extensions are real distributions on ``sys.path`` (a ``.dist-info`` with an entry point),
loaded by a fresh interpreter, as an installed one would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MODULES = {
    "exitimport": "import sys\nsys.exit(3)\n",
    "baseimport": "class Doom(BaseException):\n    pass\n\nraise Doom('the SDK aborts the interpreter')\n",
    "exithook": textwrap.dedent(
        """
        import sys
        from datasources import hookimpl

        @hookimpl
        def getDataSourcesModule():
            sys.exit("no licence")
        """
    ),
    "exithelpers": textwrap.dedent(
        """
        from datasources import hookimpl

        @hookimpl
        def getDataSourceHelpers(source_name, namespace, data_source):
            raise SystemExit(7)
        """
    ),
}


def _install(root: Path, name: str, code: str) -> None:
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[datasources.extensions]\n{name} = {name}_pkg\n")
    (root / f"{name}_pkg.py").write_text(code)


@pytest.fixture
def hostile_path(tmp_path: Path) -> Path:
    for name, code in MODULES.items():
        _install(tmp_path, name, code)
    return tmp_path


def _run(args: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]))
    env["DATASOURCES_ENTRY_POINT_CACHE"] = "0"
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def test_host_records_exits_and_base_exceptions_as_load_failures(hostile_path: Path) -> None:
    code = """
        import json
        from datasources import Host
        host = Host()  # the bundled sample source: the helpers hook runs too
        print(json.dumps({
            "failures": [[f.extension, f.version, f.stage, f.message] for f in host.load_errors],
            "studies": len(host.get_data_source("sample").query.studies.search()),
        }))
    """
    result = _run(["-c", textwrap.dedent(code)], hostile_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    failures = {f[0]: f for f in data["failures"]}
    assert failures["exitimport"][1:3] == ["0.1", "import"]
    assert "SystemExit: called sys.exit(3)" in failures["exitimport"][3]
    assert failures["baseimport"][2] == "import"
    assert "Doom: the SDK aborts the interpreter" in failures["baseimport"][3]
    assert failures["exithook"][2] == "getDataSourcesModule"
    assert "sys.exit('no licence')" in failures["exithook"][3]
    assert failures["exithelpers"][2] == "getDataSourceHelpers"
    assert "sys.exit(7)" in failures["exithelpers"][3]
    assert data["studies"] > 0  # the host works on


def test_strict_host_raises_a_typed_error_instead(hostile_path: Path) -> None:
    code = """
        from datasources import Host
        from datasources.errors import ExtensionLoadError
        try:
            Host({"dataSources": []}, strict=True)
        except ExtensionLoadError as exc:
            print("typed", type(exc.__cause__).__name__)
    """
    result = _run(["-c", textwrap.dedent(code)], hostile_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:1] == ["typed"]


def test_the_cli_lists_them_as_failures_and_exits_its_own_way(hostile_path: Path) -> None:
    result = _run(["-m", "datasources", "plugins", "--json"], hostile_path)
    assert result.returncode == 1, result.stderr  # the CLI's "some extension failed", not sys.exit(3)
    data = json.loads(result.stdout)
    stages = {e["extension"]: e["stage"] for e in data["errors"]}
    assert stages == {"exitimport": "import", "baseimport": "import", "exithook": "getDataSourcesModule"}
    names = {e["name"] for e in data["extensions"]}
    assert {"default", "testext"} <= names
    studies = _run(["-m", "datasources", "studies", "--json"], hostile_path)
    assert studies.returncode == 0, studies.stderr
    assert json.loads(studies.stdout)


def test_keyboard_interrupt_still_interrupts(tmp_path: Path) -> None:
    _install(tmp_path, "ctrlc", "raise KeyboardInterrupt\n")
    result = _run(["-c", "from datasources import Host; Host({'dataSources': []}); print('went on')"], tmp_path)
    assert "went on" not in result.stdout
    assert "KeyboardInterrupt" in result.stderr


def test_a_factory_that_exits_makes_its_source_unavailable_not_the_host(tmp_path: Path) -> None:
    """``createDataSource`` given as ``"module:function"`` is imported lazily; its ``sys.exit`` is a source error."""
    _install(
        tmp_path,
        "exitfactory",
        textwrap.dedent(
            """
            from datasources import hookimpl

            @hookimpl
            def getDataSourcesModule():
                return [{"name": "src", "type": "webApi", "createDataSource": "exitfactory_impl:create"}]
            """
        ),
    )
    (tmp_path / "exitfactory_impl.py").write_text("def create(configuration, host):\n    raise SystemExit(4)\n")
    code = textwrap.dedent(
        """
        import json
        from datasources import Host
        h = Host({"dataSources": [
            {"namespace": "exitfactory.dataSourcesModule.src", "sourceName": "bad", "configuration": {}},
            {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "ok",
             "configuration": {"bundled": "sample"}},
        ], "defaultDataSourceName": "ok"})
        try:
            h.get_data_source("bad")
        except Exception as exc:
            print(json.dumps([type(exc).__name__, str(exc)]))
        print(len(h.get_data_source("ok").query.studies.search()) > 0)
        """
    )
    out = _run(["-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    name, message = json.loads(first)
    assert name == "DataSourceUnavailableError" and "SystemExit" in message
    assert second == "True"
