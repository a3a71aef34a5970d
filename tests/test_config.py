"""Configuration: shapes, files, environment substitution, and every error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasources.config import AppConfig, load_config, normalize_namespace
from datasources.errors import ConfigurationError

ENTRY = {
    "namespace": "default.dataSourcesModule.dicomjson",
    "sourceName": "a",
    "configuration": {"bundled": "sample"},
}


def test_ohif_namespace_maps_to_our_extension() -> None:
    assert normalize_namespace("@ohif/extension-default.dataSourcesModule.dicomweb") == (
        "default.dataSourcesModule.dicomweb"
    )
    cfg = AppConfig.from_dict(
        {"dataSources": [dict(ENTRY, namespace="@ohif/extension-default.dataSourcesModule.dicomjson")]}
    )
    assert cfg.data_sources[0].namespace == "default.dataSourcesModule.dicomjson"
    assert cfg.default_data_source_name == "a"


def test_duplicate_source_name() -> None:
    with pytest.raises(ConfigurationError, match="duplicate sourceName 'a'"):
        AppConfig.from_dict({"dataSources": [ENTRY, ENTRY]})


def test_default_not_among_sources() -> None:
    with pytest.raises(ConfigurationError, match="defaultDataSourceName 'b' is not among the sources"):
        AppConfig.from_dict({"defaultDataSourceName": "b", "dataSources": [ENTRY]})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "no 'dataSources'"),
        ({"dataSources": {}}, "must be a list"),
        ({"dataSources": [1]}, "must be a mapping"),
        ({"dataSources": [{"namespace": "x.dataSourcesModule.y"}]}, "lacks sourceName"),
        ({"dataSources": [{"sourceName": "x"}]}, "lacks namespace"),
        ({"dataSources": [dict(ENTRY, namespace="nodots")]}, "is not of the form"),
        ({"dataSources": [dict(ENTRY, configuration=[1])]}, "configuration must be a mapping"),
        ({"dataSources": [dict(ENTRY, colour="red")]}, "unknown keys: colour"),
        ([], "must be a mapping"),
    ],
)
def test_shape_errors(data: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(data)  # type: ignore[arg-type]


def test_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS_TEST_TOKEN", "s3cret")
    cfg = load_config(
        {"dataSources": [dict(ENTRY, configuration={"token": "${DS_TEST_TOKEN}", "x": "${DS_UNSET_VAR:-fallback}"})]}
    )
    assert cfg.data_sources[0].configuration == {"token": "s3cret", "x": "fallback"}


def test_missing_env_var_is_named_not_leaked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DS_MISSING", raising=False)
    with pytest.raises(ConfigurationError, match="DS_MISSING"):
        load_config({"dataSources": [dict(ENTRY, configuration={"token": "${DS_MISSING}"})]})


def test_repr_of_entry_hides_configuration() -> None:
    cfg = load_config({"dataSources": [dict(ENTRY, configuration={"password": "hunter2"})]})
    assert "hunter2" not in repr(cfg)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".toml"])
def test_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"app{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"defaultDataSourceName": "a", "dataSources": [ENTRY]}))
    elif suffix == ".yaml":
        path.write_text(
            "defaultDataSourceName: a\ndataSources:\n  - namespace: default.dataSourcesModule.dicomjson\n"
            "    sourceName: a\n    configuration: {bundled: sample}\n"
        )
    else:
        path.write_text(
            'defaultDataSourceName = "a"\n[[dataSources]]\nnamespace = "default.dataSourcesModule.dicomjson"\n'
            'sourceName = "a"\n[dataSources.configuration]\nbundled = "sample"\n'
        )
    cfg = load_config(path)
    assert cfg.default_data_source_name == "a"
    assert cfg.data_sources[0].configuration == {"bundled": "sample"}


@pytest.mark.parametrize(
    ("suffix", "text", "line"),
    [
        (".json", '{\n  "dataSources": [\n    {"namespace": }\n  ]\n}', "line 3"),
        (".yaml", "dataSources:\n  - namespace: a\n   sourceName: [\n", "line 3"),
        (".toml", "dataSources = [\n\n  {namespace = }\n]\n", "line 3"),
    ],
)
def test_syntax_error_names_the_line(tmp_path: Path, suffix: str, text: str, line: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert line in str(info.value)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(tmp_path / "nope.json")
    other = tmp_path / "app.ini"
    other.write_text("x")
    with pytest.raises(ConfigurationError, match="unknown configuration format"):
        load_config(other)


def test_none_is_the_embedded_default() -> None:
    cfg = load_config(None)
    assert cfg.default_data_source_name == "sample"
    assert cfg.data_sources[0].namespace == "default.dataSourcesModule.dicomjson"
