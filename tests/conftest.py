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

#: The order in which pytest-xdist hands out whole files (``--dist loadfile --no-loadscope-reorder``,
#: pyproject.toml): the slowest first, so that no long file is handed out last to run alone while
#: the other worker has nothing left; then the files not listed, in their order; then the files
#: with ``exclusive`` tests (tests/support/exclusive.py), largest first: an exclusive test waits
#: for the test under way on the other worker, and at the end those are short ones (early on it
#: could be test_cli_fresh_venv.py's 100 s). Seconds: a full run on 2 cores with CI=true.
SLOWEST_FILES = (
    "test_cli_fresh_venv.py",  # 100
    "test_dimse.py",  # 56
    "test_cli_usage.py",  # 45
    "test_export_runs.py",  # 41
    "test_conformance.py",  # 32
    "test_fuzz_config.py",  # 26
    "test_gateway_stow_spool.py",  # 24
    "test_transfer_syntax.py",  # 22
    "test_docs_dicomweb.py",  # 22
    "test_fuzz_naturalize.py",  # 22
    "test_support.py",  # 19
    "test_dicomweb_auth.py",  # 17
    "test_merge.py",  # 17
    "test_fuzz_query.py",  # 16
    "test_fuzz_multipart.py",  # 16
    "test_dicomlocal.py",  # 16
)
LAST_FILES = (
    "test_gateway_workers.py",  # 42
    "test_dimse_faults.py",  # 25
    "test_gateway_hostile.py",  # 19
    "test_docs_deploy.py",  # 10
    "test_gateway_hardening.py",  # 9
    "test_dicomweb_hardening.py",  # 9
    "test_matching_hostile.py",  # 7
    "test_gateway_frames_lane.py",  # 5
    "test_dicomweb_faults.py",  # 3
    "test_paused_gc.py",  # 1
    "test_config_hostile.py",  # 0.4
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    rank.update({name: len(SLOWEST_FILES) + 1 + i for i, name in enumerate(LAST_FILES)})
    middle = len(SLOWEST_FILES)
    items.sort(key=lambda item: rank.get(item.path.name, middle))  # stable: each file's tests in order


@pytest.fixture
def sample_host() -> Any:
    """A host over the embedded default configuration (the bundled sample studies)."""
    from datasources import Host

    return Host()


@pytest.fixture
def sample_document() -> dict[str, Any]:
    import json

    return json.loads(SAMPLE_JSON.read_text(encoding="utf-8"))
