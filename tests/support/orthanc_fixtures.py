"""pytest plugin: a real Orthanc (with and without basic auth), its test data, a fault server.

Loaded by ``tests/conftest.py`` (``pytest_plugins = ["support.orthanc_fixtures"]``).

Fixtures
--------
``orthanc`` (session) -> :class:`support.orthanc.OrthancServer`, no auth, shared by the session.
    ``.url`` (str, Orthanc REST root ``http://127.0.0.1:PORT``), ``.dicomweb_url`` (str,
    ``url + "/dicom-web"``), ``.port`` (int), ``.auth`` (None here), ``.session``
    (requests.Session), ``.upload(items, workers=1) -> list[str]`` (Orthanc instance IDs; items:
    bytes, paths or pydicom Datasets, one or many; REST ``POST /instances``), ``.clear()``
    (delete every study), ``.delete_study(orthanc_id)``, ``.get(path) -> Any`` (REST JSON),
    ``.study_count() -> int``, ``.instance_count() -> int``, ``.study_uids() -> set[str]``,
    ``.log_tail() -> str``. It holds the ``orthanc_dataset`` data once that fixture is used: a
    test that stores into it or clears it does not break later tests (see below), but prefer
    ``orthanc_empty`` for tests that write.
``orthanc_dataset`` (session) -> :class:`LoadedData`, :data:`DATASET_SPECS` loaded into ``orthanc``.
    ``.server`` (the ``orthanc`` server), ``.url``, ``.dicomweb_url``, ``.specs``
    (list[StudySpec]), ``.datasets`` (list[pydicom FileDataset], in upload order), ``.files``
    (list[Path], the same instances as Part 10 files), ``.study_uids`` (list[str]),
    ``.by_sop() -> dict[SOPInstanceUID, FileDataset]``, ``.study(seed) -> StudySpec``,
    ``.datasets_of(study_uid) -> list[FileDataset]``, ``.multiframe`` (the multi-frame
    FileDataset), ``.ensure_loaded()``. Before every test that uses it, the server is checked
    and, if a test changed it, restored to exactly this data set.
    The data: 4 studies, 3 patients, 11 instances. ``LEE^ANNA^K`` (PAT0001) has
    ``CT CHEST W/O CONTRAST`` (2019-04-12, 2 series x 3) and ``MR BRAIN W/WO CONTRAST``
    (2021-09-30, 1 x 2); ``GARCIA^JOSE`` (PAT0002) ``CT ABDOMEN PELVIS`` (2020-01-05, 1 x 2);
    ``OKAFOR^NGOZI^A`` (PAT0003) ``MR KNEE LEFT`` (2023-11-11), one 4-frame instance. Every
    instance has a private block ``(0029,00xx) "DATASOURCES TESTS 1.0"`` with an LO and a
    512-byte OB (a ``BulkDataURI`` in WADO-RS metadata) and 16x16 16-bit pixels.
``orthanc_empty`` (module) -> OrthancServer, a fresh empty server per test module (for STOW).
``orthanc_basic_auth`` (session) -> OrthancServer with HTTP basic auth, empty.
    ``.user`` (str), ``.password`` (str), ``.auth`` ((user, password)); ``.session`` and the
    helpers already authenticate. Wrong or missing credentials get 401.
``fault_server`` (function) -> :class:`support.faultserver.FaultServer` on 127.0.0.1, stopped
    after the test. ``.url``, ``.script(path, *Reply)``, ``.requests``, ``.requests_to(path)``,
    ``.reset()``; see that module.

Tests using the Orthanc fixtures get the ``orthanc`` marker. Without Orthanc they are skipped,
unless ``DATASOURCES_REQUIRE_ORTHANC=1`` (set by ``.ci/run``), which makes that a failure. When
run as root, the fixtures first install Debian's packages themselves (``DATASOURCES_NO_APT=1``
turns that off).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import FileDataset

from .dicomgen import StudySpec, make_study, write_datasets
from .faultserver import FaultServer
from .orthanc import OrthancServer, ensure_installed

__all__ = ["DATASET_SPECS", "ORTHANC_FIXTURES", "LoadedData"]

ORTHANC_FIXTURES = {"orthanc", "orthanc_dataset", "orthanc_basic_auth", "orthanc_empty"}
REQUIRE_ENV = "DATASOURCES_REQUIRE_ORTHANC"
BASIC_AUTH_USER = "alice"
BASIC_AUTH_PASSWORD = "s3cret-Pa55"

DATASET_SPECS = [
    StudySpec("lee-ct", patient_name="LEE^ANNA^K", patient_id="PAT0001", modality="CT", study_date="20190412",
              description="CT CHEST W/O CONTRAST", accession="ACC1001", n_series=2, n_instances=3),
    StudySpec("lee-mr", patient_name="LEE^ANNA^K", patient_id="PAT0001", modality="MR", study_date="20210930",
              study_time="143000", description="MR BRAIN W/WO CONTRAST", accession="ACC1002", n_series=1,
              n_instances=2),
    StudySpec("garcia", patient_name="GARCIA^JOSE", patient_id="PAT0002", modality="CT", study_date="20200105",
              description="CT ABDOMEN PELVIS", accession="ACC2001", n_series=1, n_instances=2, patient_sex="M",
              patient_birth_date="19581203"),
    StudySpec("okafor", patient_name="OKAFOR^NGOZI^A", patient_id="PAT0003", modality="MR", study_date="20231111",
              description="MR KNEE LEFT", accession="ACC3001", n_series=1, n_instances=1, frames=4,
              patient_birth_date="19920517"),
]  # fmt: skip


@dataclass
class LoadedData:
    """The data set as loaded into a server, with the pydicom datasets to compare answers with."""

    server: OrthancServer
    datasets: list[FileDataset]
    specs: list[StudySpec]
    files: list[Path] = field(default_factory=list)
    _orthanc_ids: set[str] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def dicomweb_url(self) -> str:
        return self.server.dicomweb_url

    @property
    def study_uids(self) -> list[str]:
        return [spec.study_uid for spec in self.specs]

    @property
    def multiframe(self) -> FileDataset:
        return next(ds for ds in self.datasets if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1)

    def by_sop(self) -> dict[str, FileDataset]:
        return {ds.SOPInstanceUID: ds for ds in self.datasets}

    def study(self, seed: object) -> StudySpec:
        return next(s for s in self.specs if s.seed == seed)

    def datasets_of(self, study_uid: str) -> list[FileDataset]:
        return [ds for ds in self.datasets if ds.StudyInstanceUID == study_uid]

    def load(self) -> None:
        """Empty the server and upload the data set."""
        self.server.clear()
        self.server.upload(self.datasets, workers=2)
        self._orthanc_ids = set(self.server.get("/studies"))

    def ensure_loaded(self) -> None:
        """Restore exactly this data set if a test added, removed or cleared anything."""
        intact = (
            self._orthanc_ids
            and set(self.server.get("/studies")) == self._orthanc_ids
            and self.server.instance_count() == len(self.datasets)
        )
        if not intact:
            self.load()


def _require_orthanc() -> None:
    if ensure_installed():
        return
    message = "Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "orthanc: needs the real Orthanc DICOMweb server (started by the tests)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ORTHANC_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.orthanc)


#: Orthanc tests skipped although ``DATASOURCES_REQUIRE_ORTHANC=1`` (under xdist the controller sees
#: every worker's reports, so its count is the run's).
_SKIPPED_REQUIRED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    required = os.environ.get(REQUIRE_ENV) == "1"
    if required and report.skipped and not hasattr(report, "wasxfail") and "orthanc" in report.keywords:
        _SKIPPED_REQUIRED.append(report.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped Orthanc test is a failure: the run's exit status says so too."""
    if _SKIPPED_REQUIRED and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """In CI a skipped Orthanc test is a failure: say so loudly at the end."""
    if os.environ.get(REQUIRE_ENV) != "1":
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
def orthanc_dataset(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> LoadedData:
    datasets = [ds for spec in DATASET_SPECS for ds in make_study(spec)]
    files = write_datasets(datasets, tmp_path_factory.mktemp("orthanc-dataset"))
    data = LoadedData(orthanc, datasets, list(DATASET_SPECS), files)
    data.load()
    return data


@pytest.fixture(autouse=True)
def _orthanc_dataset_intact(request: pytest.FixtureRequest) -> None:
    """Tests share the session's data set: put it back if an earlier test changed it."""
    if "orthanc_dataset" in request.fixturenames:
        request.getfixturevalue("orthanc_dataset").ensure_loaded()


@pytest.fixture(scope="module")
def orthanc_empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    _require_orthanc()
    with OrthancServer(folder=tmp_path_factory.mktemp("orthanc-empty")) as server:
        yield server


@pytest.fixture(scope="session")
def orthanc_basic_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    _require_orthanc()
    folder: Path = tmp_path_factory.mktemp("orthanc-auth")
    with OrthancServer(user=BASIC_AUTH_USER, password=BASIC_AUTH_PASSWORD, folder=folder) as server:
        yield server


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server
