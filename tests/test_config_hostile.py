"""The config loader against hostile files: alias bombs, bad encodings, PyYAML's constructor
errors, deep nesting; each a ConfigurationError that names the file, fast (issue 11)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from datasources.config import load_config
from datasources.errors import ConfigurationError

GOOD = """\
defaultDataSourceName: a
base: &base
  friendlyName: shared
  bundled: sample
dataSources:
  - namespace: default.dataSourcesModule.dicomjson
    sourceName: a
    configuration:
      <<: *base
      friendlyName: first
  - namespace: default.dataSourcesModule.dicomjson
    sourceName: b
    configuration: *base
"""


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"dataSources: *a{levels}")
    return "\n".join(lines) + "\n"


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_aliases_and_merge_keys_within_the_budget_still_work(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "ok.yaml", GOOD))
    first, second = config.data_sources
    assert first.configuration == {"friendlyName": "first", "bundled": "sample"}
    assert second.configuration == {"friendlyName": "shared", "bundled": "sample"}


@pytest.mark.exclusive
def test_an_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.yaml", GOOD)
    bomb = _write(tmp_path, "bomb.yaml", _bomb())
    assert len(bomb.read_bytes()) < 1000

    def best(path: Path, expect_error: bool) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            if expect_error:
                with pytest.raises(ConfigurationError, match=r"bomb\.yaml: YAML aliases expand"):
                    load_config(path)
            else:
                load_config(path)
            times.append(time.perf_counter() - start)
        return min(times)

    ratio = best(bomb, True) / best(good, False)
    assert ratio < 20, ratio  # before: 30 s and 800 MB, against a millisecond


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "loop.yaml", "dataSources: &x [*x]\n")
    with pytest.raises(ConfigurationError, match=r"loop\.yaml: a YAML alias refers to a node that contains it"):
        load_config(path)


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_a_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path, f"latin{suffix}", "dataSources = []\n# Gr\xfc\xdfe\n".encode("latin-1"))
    with pytest.raises(ConfigurationError, match=rf"latin\{suffix}: not UTF-8 text: byte 21 \(line 2\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("dataSources: []\nwhen: 2020-13-45\n", "month must be in 1..12"),
        ("dataSources: []\nblob: !!binary 'abc'\n", "failed to decode base64"),
        ("dataSources: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("dataSources: []\nbig: " + "9" * 5000 + "\n", "ValueError"),
        ("dataSources: []\n? [1, 2]\n: x\n", "found unhashable key"),
        ("dataSources: []\n<<: 5\n", "expected a mapping or list of mappings for merging"),
        ("a: [\n", "line 2, column 1"),
    ],
)
def test_pyyaml_errors_are_configuration_errors_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path, "bad.yaml", content)
    with pytest.raises(ConfigurationError, match=r"bad\.yaml: ") as caught:
        load_config(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("suffix", "content"),
    [
        (".yaml", "dataSources: " + "[" * 5000 + "]" * 5000 + "\n"),
        (".yaml", "dataSources:\n" + "".join(" " * i + "- \n" for i in range(0, 400, 2))),
        (".json", '{"dataSources": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        (".toml", "dataSources = " + "[" * 5000 + "]" * 5000 + "\n"),
        (".json", '{"dataSources": [], "x": ' + "[" * 100 + "]" * 100 + "}"),
        (".json", '{"dataSources": [], "n": ' + "1" * 5000 + "}"),
        (".toml", "dataSources = []\nn = " + "1" * 5000 + "\n"),
    ],
)
def test_deep_nesting_and_huge_numbers_are_configuration_errors(tmp_path: Path, suffix: str, content: str) -> None:
    path = _write(tmp_path, f"deep{suffix}", content)
    with pytest.raises(ConfigurationError, match=rf"deep\{suffix}"):
        load_config(path)


def test_deep_or_cyclic_mappings_from_python_are_configuration_errors() -> None:
    deep: dict[str, Any] = {}
    for _ in range(10_000):
        deep = {"x": deep}
    with pytest.raises(ConfigurationError, match="nested deeper than"):
        load_config({"dataSources": [], "extra": deep})
    cyclic: dict[str, Any] = {"dataSources": []}
    cyclic["self"] = cyclic
    with pytest.raises(ConfigurationError, match="refers to itself"):
        load_config(cyclic)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dataSources": [{"namespace": "a.dataSourcesModule.b", "sourceName": "s", 1: 2}]}, "unknown keys: 1"),
        ({"dataSources": [], "defaultDataSourceName": ["x"]}, "defaultDataSourceName must be a string"),
    ],
)
def test_odd_keys_and_values_are_configuration_errors(data: dict[Any, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(data)
