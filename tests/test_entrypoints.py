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


def test_the_current_directory_and_the_entry_script_do_not_invalidate_the_cache(tmp_path: Path) -> None:
    """``python -c`` puts the current directory first on ``sys.path``; files written there are not installs."""
    root, cache, work = tmp_path / "site", tmp_path / "cache", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    install_fake(root, "fakeone", "1.0")
    environ = dict(os.environ, PYTHONPATH=str(root), XDG_CACHE_HOME=str(cache))
    probe = (
        LIST_CODE
        + "; import datasources.entrypoints as m; print(m._read(m._cache_path('datasources.extensions')) is not None)"
    )

    def run(*argv: str) -> list[str]:
        out = subprocess.run(argv, env=environ, cwd=work, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    run(sys.executable, "-c", probe)  # writes the cache
    (path,) = (cache / "datasources").glob("entry-points-*.tsv")
    written = path.stat().st_mtime_ns
    (work / "notes.txt").write_text("a file written in the current directory")
    assert run(sys.executable, "-c", probe)[-1] == "True"
    script = tmp_path / "elsewhere" / "probe.py"
    script.parent.mkdir()
    script.write_text(probe.replace("; ", "\n"))
    assert run(sys.executable, str(script))[-1] == "True"  # another sys.path[0]: same cache
    assert path.stat().st_mtime_ns == written  # never rewritten: no rescan happened


def two_paths(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A cache folder and two ``sys.path`` folders, each holding one fake distribution."""
    one, two = tmp_path / "one", tmp_path / "two"
    for root, name in ((one, "fakeone"), (two, "faketwo")):
        root.mkdir()
        install_fake(root, name, "1.0")
    return tmp_path / "cache", one, two


def test_two_settings_of_the_path_used_in_turn_keep_their_own_caches(tmp_path: Path) -> None:
    """A benchmark's two cases, or the CLI and a test run: each ``sys.path`` keeps its own answer."""
    cache, one, two = two_paths(tmp_path)
    assert ["fakeone", "1.0"] in listed(one, cache)
    assert ["faketwo", "1.0"] in listed(two, cache)
    files = sorted((cache / "datasources").glob("entry-points-*.tsv"))
    assert len(files) == 2
    written = [p.stat().st_mtime_ns for p in files]
    for _ in range(2):  # used in turn: neither is rescanned and rewritten
        one_listed, two_listed = listed(one, cache), listed(two, cache)
        assert ["fakeone", "1.0"] in one_listed and ["faketwo", "1.0"] not in one_listed
        assert ["faketwo", "1.0"] in two_listed and ["fakeone", "1.0"] not in two_listed
    assert [p.stat().st_mtime_ns for p in files] == written


def test_cache_files_of_paths_unused_for_a_month_are_removed_by_the_next_scan(tmp_path: Path) -> None:
    cache, one, two = two_paths(tmp_path)
    listed(one, cache)
    (old,) = (cache / "datasources").glob("entry-points-*.tsv")
    month_ago = old.stat().st_mtime - 31 * 24 * 3600
    os.utime(old, (month_ago, month_ago))
    recent = cache / "datasources" / "entry-points-0000000000000000.tsv"
    recent.write_text("#path\tnowhere\t-\n")  # another path's file, written lately: kept
    listed(two, cache)  # a scan (a new sys.path) writes its file and prunes
    assert not old.exists()
    assert recent.exists()
    assert len(list((cache / "datasources").glob("entry-points-*.tsv"))) == 2
