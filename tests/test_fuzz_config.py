"""Hypothesis: the config loader takes any file (YAML with anchors, aliases, tags and merge
keys; JSON; TOML; bytes that are not UTF-8) or any mapping, and raises nothing but
``ConfigurationError`` (issue 11).

Examples are derandomized (tests/conftest.py's ``ci`` profile), 10,000 in CI; each is read from one byte
string (tests/support/fuzzbytes.py) so that 10,000 of them cost seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datasources.config import AppConfig, load_config
from datasources.errors import ConfigurationError
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzzbytes import EXAMPLES, Choices

ENTRY = "\n  - namespace: default.dataSourcesModule.dicomjson\n    sourceName: s{n}\n    configuration: "
YAML = [
    "dataSources:", ENTRY, "[", "]", "{", "}", ", ", ": ", "- ", "\n", "  ", "&a ", "*a", "&b ", "*b", "<<: ",
    "!!binary ", "!!timestamp ", "!!python/object:os.system ", "!!int ", "!!float ", "!!set ", "!!omap ", "? ",
    "2020-13-45", "0x", "1e400", "9" * 30, "'", '"', "\\", "#", "---", "...", "%YAML 1.1\n", "${HOME}", "${NOPE}",
    "defaultDataSourceName: ", "friendlyName: ", "null", "~", "true", "x", "\t", "|", ">", "@", "`",
]  # fmt: skip
JSON = ['{"dataSources": [', "]", "}", "{", "[", ",", ":", '"x"', "1", "1e999", "-", "null", "NaN", '"\\u', '"s"']
TOML = ["dataSources = [", "]", "[[dataSources]]", "\n", 'namespace = "a.dataSourcesModule.b"', 'sourceName = "s"']
TOML += ["[configuration]", "x = ", "1979-05-27", "0x", "inf", "{", "}", '"', "'''", "9" * 30]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzconfig")


def _text(c: Choices, pool: list[str]) -> bytes:
    pieces = []
    for n in range(c.below(24)):
        kind = c.below(16)
        if kind == 0:
            pieces.append(c.chunk(3))  # raw bytes: not always UTF-8
        else:
            pieces.append(c.pick(pool).replace("{n}", str(n)).encode())
    return b"".join(pieces)


def _check(path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigurationError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(config, AppConfig)


@settings(max_examples=EXAMPLES)
@given(data=st.binary(max_size=96))
def test_any_file_loads_or_raises_a_configuration_error_naming_it(folder: Path, data: bytes) -> None:
    c = Choices(data)
    suffix, pool = c.pick([(".yaml", YAML), (".yaml", YAML), (".json", JSON), (".toml", TOML)])
    path = folder / f"config{suffix}"
    path.write_bytes(_text(c, pool))
    _check(path)


def _value(c: Choices, depth: int = 0) -> Any:
    kind = c.below(7 if depth < 3 else 4)
    if kind == 0:
        return c.pick(["x", "${HOME}", "${NOPE_NOT_SET}", "${NOPE:-d}", "default.dataSourcesModule.dicomjson"])
    if kind == 1:
        return c.pick([None, 1, 2.5, True, b"x", object()])
    if kind == 2:
        return "s" + str(c.below(3))
    if kind == 3:
        return c.pick(["namespace", "sourceName", "configuration", "friendlyName", "dataSources"])
    if kind == 4:
        return [_value(c, depth + 1) for _ in range(c.below(3))]
    if kind == 5:
        return tuple(_value(c, depth + 1) for _ in range(c.below(2)))
    keys = ["namespace", "sourceName", "configuration", "friendlyName", "dataSources", "defaultDataSourceName", 1]
    return {c.pick(keys): _value(c, depth + 1) for _ in range(c.below(4))}


@settings(max_examples=EXAMPLES // 10)
@given(st.binary(max_size=64))
def test_any_mapping_loads_or_raises_a_configuration_error(data: bytes) -> None:
    c = Choices(data)
    mapping = {"dataSources": _value(c)} if c.flag() else _value(c)
    try:
        config = load_config(mapping)
    except ConfigurationError:
        return
    assert isinstance(config, AppConfig)
