"""What a fresh interpreter imports to start a host, and to create a dicomweb source.

A host's start is timed against ``import pluggy`` (bench/bench_host_start.py, goal 1.5x), so
it may import nothing heavy: no source implementation, no HTTP stack, no CLI or gateway
libraries, not even ``dataclasses``, ``pathlib`` or ``logging``; and on a warm entry-point
cache not importlib-metadata either. Creating a dicomweb source (timed against ``import
pluggy, requests, orjson, attrs``, goal 1.2x) imports its HTTP stack, but not pydicom, nor the
query parser, matcher or STOW, which wait for the first search or store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAVY_AT_START = [
    "pydicom",
    "requests",
    "urllib3",
    "rich",
    "typer",
    "click",
    "starlette",
    "uvicorn",
    "anyio",
    "attr",
    "attrs",
    "numpy",
    "PIL",
    "yaml",
    "orjson",
    "fsspec",
    "redis",
    "prometheus_client",
    "datasources_default.dicomweb",
    "datasources.query",
    "datasources.naturalize",
    "dataclasses",
    "pathlib",
    "logging",
    "json",
    "threading",
    "urllib.parse",
]

HOST = "from datasources import Host; h = Host({'dataSources': []}); assert h.namespaces and not h.load_errors"
DICOMWEB = (
    "from datasources import Host; h = Host({'dataSources': [{'namespace': 'default.dataSourcesModule.dicomweb', "
    "'sourceName': 'o', 'configuration': {'wadoRoot': 'http://127.0.0.1:9/dicom-web', "
    "'qidoRoot': 'http://127.0.0.1:9/dicom-web'}}]}); h.get_data_source('o')"
)


def loaded_after(code: str, cache: Path, names: list[str]) -> list[str]:
    """Which of ``names`` a fresh ``python -c`` has in ``sys.modules`` once ``code`` ran.

    Modules the interpreter had before ``code`` ran are not ``code``'s doing: a machine's own
    ``.pth`` files (CI's Python has one that imports pathlib, threading and urllib.parse) run
    at ``site`` time, before any of ours.
    """
    probe = (
        f"import sys; before = set(sys.modules)\n{code}\n"
        f"print(' '.join(n for n in {names!r} if n in sys.modules and n not in before))"  # no json here
    )
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    return lines[-1].split() if lines else []


def test_a_host_starts_without_importing_anything_heavy(tmp_path: Path) -> None:
    # the first start scans the installed distributions (importlib-metadata, which imports
    # pathlib, json...), and still imports no source, HTTP, CLI or gateway library
    first = loaded_after(HOST, tmp_path, [*HEAVY_AT_START, "importlib_metadata"])
    assert "importlib_metadata" in first
    assert [n for n in first if n.partition(".")[0] in {"pydicom", "requests", "rich", "typer", "starlette"}] == []
    # later starts read the cache
    assert loaded_after(HOST, tmp_path, [*HEAVY_AT_START, "importlib_metadata"]) == []


def test_creating_a_dicomweb_source_imports_its_http_stack_and_not_pydicom_or_the_query_code(tmp_path: Path) -> None:
    names = ["requests", "urllib3", "orjson", "pydicom", "numpy", "rich", "typer", "starlette", "yaml"]
    names += ["datasources.query", "datasources.matching", "datasources.results", "datasources_default.dicomweb.stow"]
    names += ["datasources_default.dicomweb.tokens"]  # no auth configured: no token machinery
    loaded_after(DICOMWEB, tmp_path, names)  # fills the entry-point cache
    assert loaded_after(DICOMWEB, tmp_path, names) == ["requests", "urllib3", "orjson"]
