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

#: The files that take longest, slowest first: they run first. pytest-xdist (``--dist loadfile
#: --no-loadscope-reorder``, pyproject.toml) hands out whole files in collection order, and a long
#: file handed out last runs alone while the other worker has nothing left to do. Seconds are
#: measured on 2 cores with CI=true; a file not listed keeps its place after these.
SLOWEST_FILES = (
    "test_dimse.py",  # 50
    "test_cli_fresh_venv.py",  # 48
    "test_cli_usage.py",  # 48
    "test_gateway_workers.py",  # 40
    "test_dimse_faults.py",  # 35
    "test_export_runs.py",  # 30
    "test_gateway_hostile.py",  # 28
    "test_fuzz_config.py",  # 21
    "test_docs_deploy.py",  # 20
    "test_gateway_hardening.py",  # 17
    "test_dicomweb_hardening.py",  # 16
    "test_fuzz_naturalize.py",  # 16
    "test_matching_hostile.py",  # 14
    "test_gateway_frames_lane.py",  # 13
    "test_fuzz_query.py",  # 11
    "test_fuzz_multipart.py",  # 11
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's tests in order


@pytest.fixture
def sample_host() -> Any:
    """A host over the embedded default configuration (the bundled sample studies)."""
    from datasources import Host

    return Host()


@pytest.fixture
def sample_document() -> dict[str, Any]:
    import json

    return json.loads(SAMPLE_JSON.read_text(encoding="utf-8"))
