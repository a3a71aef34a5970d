"""Extension discovery and loading: real entry points, lazy imports, every kind of breakage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from datasources import Host, hookimpl
from datasources.errors import ExtensionLoadError

NO_SOURCES: dict[str, Any] = {"dataSources": []}


def run_python(code: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=60
    )


def module_extension(name: str, **hooks: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook_name, func in hooks.items():
        setattr(mod, hook_name, hookimpl(func))
    return mod


def good_definitions() -> list[dict[str, Any]]:
    return [{"name": "memory", "type": "other", "createDataSource": "datasources_testext.source:create_memory_api"}]


def test_installed_distribution_is_found_through_its_entry_point() -> None:
    host = Host(NO_SOURCES)
    infos = {e.name: e for e in host.registry.extensions}
    assert "testext" in infos and "default" in infos
    assert infos["testext"].version == "1.2.3"
    assert infos["testext"].source == "entry point"
    assert "testext.dataSourcesModule.memory" in host.namespaces
    assert "default.dataSourcesModule.dicomjson" in host.namespaces
    assert host.load_errors == []


def test_listing_extensions_imports_no_source_implementation() -> None:
    result = run_python(
        """
        import sys, json
        from datasources import Host
        host = Host({"dataSources": []})
        print(json.dumps({
            "namespaces": host.namespaces,
            "loaded": sorted(m for m in ("requests", "pydicom", "datasources_testext.source",
                                         "datasources_default.dicomjson", "datasources_default.dicomweb")
                             if m in sys.modules),
        }))
        """
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "testext.dataSourcesModule.memory" in data["namespaces"]
    assert data["loaded"] == []


def test_source_module_is_imported_when_the_source_is_created() -> None:
    result = run_python(
        """
        import datasources_testext
        from datasources import Host
        host = Host({"dataSources": []})
        before = datasources_testext.SOURCE_IMPORTED
        host.add_data_source({"namespace": "testext.dataSourcesModule.memory", "sourceName": "m"})
        print(before, datasources_testext.SOURCE_IMPORTED)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_entry_point_that_fails_to_import_is_recorded(tmp_path: Path) -> None:
    dist = tmp_path / "brokenext-0.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenext\nVersion: 0.9\n")
    (dist / "entry_points.txt").write_text("[datasources.extensions]\nbrokenext = brokenext_pkg\n")
    (tmp_path / "brokenext_pkg.py").write_text("raise ImportError('needs libfoo, which is not installed')\n")
    result = run_python(
        """
        from datasources import Host
        host = Host({"dataSources": []})
        for f in host.load_errors:
            print(f.extension, f.version, f.stage, f.message)
        print("memory-still-there", "testext.dataSourcesModule.memory" in host.namespaces)
        """,
        extra_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "brokenext 0.9 import cannot import brokenext_pkg: ImportError: needs libfoo" in result.stdout
    assert "memory-still-there True" in result.stdout
    strict = run_python(
        """
        from datasources import Host
        from datasources.errors import ExtensionLoadError
        try:
            Host({"dataSources": []}, strict=True)
        except ExtensionLoadError as exc:
            print("raised", exc.extension, exc.version)
        """,
        extra_path=tmp_path,
    )
    assert "raised brokenext 0.9" in strict.stdout, strict.stderr


def _raise() -> Any:
    raise RuntimeError("backend SDK missing")


@pytest.mark.parametrize(
    ("hooks", "stage", "message"),
    [
        ({"getDataSourcesModule": _raise}, "getDataSourcesModule", "hook raised RuntimeError: backend SDK missing"),
        ({"getDataSourcesModule": lambda: {"name": "x"}}, "getDataSourcesModule", "must return a list"),
        ({"getDataSourcesModule": lambda: [{"name": "x", "type": "webApi"}]}, "definition", "lacks createDataSource"),
        (
            {"getDataSourcesModule": lambda: [{"name": "x", "type": "restApi", "createDataSource": print}]},
            "definition",
            "type 'restApi' is not one of",
        ),
        (
            {"getDataSourcesModule": lambda: [{"name": "x", "type": "other", "createDataSource": 42}]},
            "definition",
            "createDataSource must be callable",
        ),
        ({"getDataSourcesModule": lambda: [object()]}, "definition", "returned a object"),
    ],
)
def test_broken_hook_results_are_recorded(hooks: dict[str, Any], stage: str, message: str) -> None:
    host = Host(NO_SOURCES, extensions={"broken": module_extension("broken", **hooks)})
    failures = [f for f in host.load_errors if f.extension == "broken"]
    assert len(failures) == 1
    assert failures[0].stage == stage
    assert message in failures[0].message
    # everything else keeps working
    assert "default.dataSourcesModule.dicomjson" in host.namespaces
    with pytest.raises(ExtensionLoadError, match=message.split(":")[0]):
        Host(NO_SOURCES, extensions={"broken": module_extension("broken", **hooks)}, strict=True)


def test_hookimpl_with_wrong_arguments_is_a_registration_failure() -> None:
    def getDataSourceHelpers(source, nonsense):
        return None

    host = Host(NO_SOURCES, extensions={"wrongargs": module_extension("w", getDataSourceHelpers=getDataSourceHelpers)})
    (failure,) = [f for f in host.load_errors if f.extension == "wrongargs"]
    assert failure.stage == "register"
    assert "nonsense" in failure.message


def test_duplicate_namespace_keeps_the_first() -> None:
    twice = good_definitions() * 2
    host = Host(NO_SOURCES, extensions={"dup": module_extension("dup", getDataSourcesModule=lambda: twice)})
    (failure,) = [f for f in host.load_errors if f.extension == "dup"]
    assert "duplicate namespace 'dup.dataSourcesModule.memory'" in failure.message
    assert "dup.dataSourcesModule.memory" in host.namespaces


def test_duplicate_extension_name_is_recorded() -> None:
    host = Host(NO_SOURCES)
    host.register_extension(module_extension("x", getDataSourcesModule=good_definitions), name="testext")
    (failure,) = host.load_errors
    assert failure.extension == "testext"
    assert "already registered" in failure.message


def test_in_process_registration_with_a_callable_factory() -> None:
    from datasources_testext.source import create_memory_api

    ext = module_extension(
        "inproc",
        getDataSourcesModule=lambda: [{"name": "mem", "type": "other", "createDataSource": create_memory_api}],
    )
    host = Host(NO_SOURCES)
    host.register_extension(ext, name="inproc", version="0.0.1")
    ds = host.add_data_source(
        {
            "namespace": "inproc.dataSourcesModule.mem",
            "sourceName": "m",
            "configuration": {"studies": [{"StudyInstanceUID": "1.2", "PatientName": "DOE^J"}]},
        }
    )
    assert [s["StudyInstanceUID"] for s in ds.query.studies.search(PatientName="doe*")] == ["1.2"]


def test_helpers_contributed_by_another_extension() -> None:
    host = Host()
    ds = host.get_data_source("sample")
    assert ds.helpers.count_studies() == len(ds.query.studies.search())
    assert ds.helpers.count_studies() > 0


def test_helper_hook_that_raises_is_recorded_and_source_still_works() -> None:
    def getDataSourceHelpers(source_name, namespace, data_source):
        raise ValueError("helper setup failed")

    host = Host(extensions={"badhelpers": module_extension("b", getDataSourceHelpers=getDataSourceHelpers)})
    (failure,) = [f for f in host.load_errors if f.extension == "badhelpers"]
    assert failure.stage == "getDataSourceHelpers"
    assert "helper setup failed" in failure.message
    assert host.get_data_source("sample").query.studies.search()
