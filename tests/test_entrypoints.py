"""The entry-point cache: a fresh answer whenever a distribution is installed or removed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

LIST_CODE = (
    "import json; from datasources import Host; h = Host({'dataSources': []}); "
    "print(json.dumps(sorted((e.name, e.version) for e in h.registry.extensions)))"
)


def install_fake(root: Path, name: str, version: str) -> None:
    dist = root / f"{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[datasources.extensions]\n{name} = {name}\n")
    (root / f"{name}.py").write_text(
        "from datasources import hookimpl\n\n@hookimpl\ndef getDataSourcesModule():\n"
        "    return [{'name': 'src', 'type': 'other', 'createDataSource': 'nowhere:create'}]\n"
    )


def listed(root: Path, cache: Path, **env: str) -> list[list[str]]:
    environ = dict(os.environ, PYTHONPATH=str(root), XDG_CACHE_HOME=str(cache), **env)
    out = subprocess.run([sys.executable, "-c", LIST_CODE], env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_install_and_removal_are_seen_through_the_cache(tmp_path: Path) -> None:
    root, cache = tmp_path / "site", tmp_path / "cache"
    root.mkdir()
    install_fake(root, "fakeone", "1.0")
    first = listed(root, cache)
    assert ["fakeone", "1.0"] in first
    assert len(list((cache / "datasources").glob("entry-points-*.tsv"))) == 1  # written
    assert listed(root, cache) == first  # read back from the cache

    install_fake(root, "faketwo", "2.5")
    second = listed(root, cache)
    assert ["faketwo", "2.5"] in second and ["fakeone", "1.0"] in second

    shutil.rmtree(root / "fakeone-1.0.dist-info")
    third = listed(root, cache)
    assert ["fakeone", "1.0"] not in third and ["faketwo", "2.5"] in third
    assert len(list((cache / "datasources").glob("entry-points-*.tsv"))) == 1  # old entries removed


def test_cache_can_be_turned_off_and_a_broken_cache_is_ignored(tmp_path: Path) -> None:
    root, cache = tmp_path / "site", tmp_path / "cache"
    root.mkdir()
    install_fake(root, "fakeone", "1.0")
    assert ["fakeone", "1.0"] in listed(root, cache, DATASOURCES_ENTRY_POINT_CACHE="0")
    assert not (cache / "datasources").exists()
    listed(root, cache)
    (path,) = (cache / "datasources").glob("entry-points-*.tsv")
    path.write_text("{not json")
    assert ["fakeone", "1.0"] in listed(root, cache)
