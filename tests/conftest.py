"""Shared fixtures. The Orthanc fixtures live in tests/support/orthanc_fixtures.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["support.orthanc_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SAMPLE_JSON = REPO / "plugins/default/datasources_default/dicomjson/sample/sample.json"


@pytest.fixture
def sample_host() -> Any:
    """A host over the embedded default configuration (the bundled sample studies)."""
    from datasources import Host

    return Host()


@pytest.fixture
def sample_document() -> dict[str, Any]:
    import json

    return json.loads(SAMPLE_JSON.read_text(encoding="utf-8"))
