"""Shared fixtures. The Orthanc fixtures live in tests/support/orthanc_fixtures.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["support.orthanc_fixtures", "support.exclusive"]

# Hypothesis: the same examples on every run and every machine (derandomized: a fixed seed per
# test, no example database), so CI's time is known and a failure reproduces. Set
# HYPOTHESIS_PROFILE=explore for random examples (and a local database) when hunting.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
