"""pytest fixtures: a real Orthanc (with and without basic auth), its test data, a fault server.

- ``orthanc`` (session): an :class:`~support.orthanc.OrthancServer` without auth, empty at first;
  ``.url``, ``.dicomweb_url``, ``.upload(...)``, ``.clear()``.
- ``orthanc_dataset`` (session): ``orthanc`` loaded through Orthanc's REST API with
  :data:`DATASET_SPECS` (patients with ``^`` names, descriptions with spaces, CT and MR, a
  multi-frame instance, a private OB element); returns a :class:`LoadedData` with the pydicom
  datasets for comparison.
- ``orthanc_empty`` (module): a server of the test module's own, empty, for tests that store.
- ``orthanc_basic_auth`` (session): another server with HTTP basic auth (``.user``, ``.password``).
- ``fault_server`` (function): a :class:`~support.faultserver.FaultServer` on loopback.

Tests using the Orthanc fixtures are marked ``orthanc``. Without Orthanc they are skipped, unless
``DATASOURCES_REQUIRE_ORTHANC=1`` (set by ``.ci/run``), which turns that into a failure; when run as
root the fixture first installs Debian's packages itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .dicomgen import StudySpec, dataset_to_bytes, make_study
from .faultserver import FaultServer
from .orthanc import OrthancServer, ensure_installed

ORTHANC_FIXTURES = {"orthanc", "orthanc_dataset", "orthanc_basic_auth", "orthanc_empty"}

DATASET_SPECS = [
    StudySpec("lee-ct", patient_name="LEE^ANNA^K", patient_id="PAT0001", modality="CT", study_date="20190412",
              description="CT CHEST W/O CONTRAST", accession="ACC1001", n_series=2, n_instances=3),
    StudySpec("lee-mr", patient_name="LEE^ANNA^K", patient_id="PAT0001", modality="MR", study_date="20210930",
              study_time="143000", description="MR BRAIN W/WO CONTRAST", accession="ACC1002", n_series=1,
              n_instances=2),
    StudySpec("garcia", patient_name="GARCIA^JOSE", patient_id="PAT0002", modality="CT", study_date="20200105",
              description="CT ABDOMEN PELVIS", accession="ACC2001", n_series=1, n_instances=2),
    StudySpec("okafor", patient_name="OKAFOR^NGOZI^A", patient_id="PAT0003", modality="MR", study_date="20231111",
              description="MR KNEE LEFT", accession="ACC3001", n_series=1, n_instances=1, frames=4),
]  # fmt: skip


@dataclass
class LoadedData:
    server: OrthancServer
    datasets: list[Any]
    specs: list[StudySpec]

    def by_sop(self) -> dict[str, Any]:
        return {ds.SOPInstanceUID: ds for ds in self.datasets}

    def study(self, seed: str) -> StudySpec:
        return next(s for s in self.specs if s.seed == seed)


def _require_orthanc() -> None:
    if ensure_installed():
        return
    message = "Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
    if os.environ.get("DATASOURCES_REQUIRE_ORTHANC") == "1":
        pytest.fail(f"DATASOURCES_REQUIRE_ORTHANC=1 but {message}", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ORTHANC_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.orthanc)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """In CI a skipped Orthanc test is a failure: say so loudly at the end."""
    if os.environ.get("DATASOURCES_REQUIRE_ORTHANC") != "1":
        return
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "orthanc" in getattr(r, "keywords", {})]
    if skipped:
        terminalreporter.write_line(f"ERROR: {len(skipped)} Orthanc tests were skipped", red=True)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    _require_orthanc()
    with OrthancServer(folder=tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture(scope="session")
def orthanc_dataset(orthanc: OrthancServer) -> LoadedData:
    datasets = [ds for spec in DATASET_SPECS for ds in make_study(spec)]
    orthanc.upload(dataset_to_bytes(ds) for ds in datasets)
    return LoadedData(orthanc, datasets, DATASET_SPECS)


@pytest.fixture(scope="module")
def orthanc_empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    _require_orthanc()
    with OrthancServer(folder=tmp_path_factory.mktemp("orthanc-empty")) as server:
        yield server


@pytest.fixture(scope="session")
def orthanc_basic_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    _require_orthanc()
    folder: Path = tmp_path_factory.mktemp("orthanc-auth")
    with OrthancServer(user="alice", password="s3cret-Pa55", folder=folder) as server:
        yield server


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()
