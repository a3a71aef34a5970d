"""Fixtures for the dimse source's tests; import them into a test module (``from support.dimse_fixtures import *``).

``orthanc_pacs`` (module) -> :class:`PacsData`: an :class:`OrthancDimse` (DICOM port and DICOMweb on
loopback) holding the suite's data set (:data:`DATASET_SPECS`) plus one study of real compressed
files from pydicom's test data (JPEG baseline/lossless, JPEG-LS, JPEG 2000, RLE, deflate), each
with fresh UIDs and its pixel data untouched. ``dcmqrscp_pacs`` (module) -> :class:`PacsData` with
dcmtk's dcmqrscp holding the suite's data set. ``dimse_host(config)`` builds a Host with one
dimse source named ``pacs``; the hosts it makes during a test are closed after that test
(``_close_dimse_hosts``, autouse wherever these fixtures are imported); a module fixture's host
is closed by that fixture with ``close_hosts([host])``.

Missing Orthanc or dcmtk skips, unless ``DATASOURCES_REQUIRE_ORTHANC=1`` / ``DATASOURCES_REQUIRE_DCMTK=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .dicomgen import make_study
from .dimse_peers import Dcmqrscp, OrthancDimse, dcmtk_available
from .orthanc import ensure_installed
from .orthanc_fixtures import DATASET_SPECS

__all__ = [
    "COMPRESSED_FILES",
    "PacsData",
    "_close_dimse_hosts",
    "close_hosts",
    "compressed_datasets",
    "dcmqrscp_pacs",
    "dimse_host",
    "orthanc_pacs",
]

#: pydicom test files in compressed (and deflated) transfer syntaxes, all bundled (no download).
COMPRESSED_FILES = (
    "SC_jpeg_no_color_transform.dcm",  # JPEG Baseline .50
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless SV1 .70
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS .80
    "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless .81
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless .90
    "JPEG2000.dcm",  # JPEG 2000 .91
    "MR_small_RLE.dcm",  # RLE .5
    "image_dfl.dcm",  # Deflated .1.99
)


@dataclass
class PacsData:
    server: Any
    datasets: list[Any]
    compressed: list[Any] = field(default_factory=list)

    @property
    def study_uids(self) -> list[str]:
        return list(dict.fromkeys(str(ds.StudyInstanceUID) for ds in self.datasets))

    def by_sop(self) -> dict[str, Any]:
        return {str(ds.SOPInstanceUID): ds for ds in self.datasets + self.compressed}


def compressed_datasets() -> list[Any]:
    """The compressed test files as one study, one series each, fresh UIDs, pixel data as stored."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    study = generate_uid(prefix="2.25.")
    out = []
    for number, name in enumerate(COMPRESSED_FILES, 1):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = generate_uid(prefix="2.25.")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix="2.25.")
        ds.PatientName, ds.PatientID = "PIXEL^TEST", "PAT9000"
        ds.StudyDescription, ds.SeriesDescription = "COMPRESSED FILES", name
        ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20240202", number, 1
        ds.AccessionNumber = "ACC9000"
        ds.Modality = ds.get("Modality") or "OT"
        out.append(ds)
    return out


def _require(available: bool, env: str, message: str) -> None:
    if available:
        return
    if os.environ.get(env) == "1":
        pytest.fail(f"{env}=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def orthanc_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PacsData]:
    _require(ensure_installed(), "DATASOURCES_REQUIRE_ORTHANC", "Orthanc with its DICOMweb plugin is not installed")
    datasets = [ds for spec in DATASET_SPECS for ds in make_study(spec)]
    compressed = compressed_datasets()
    folder: Path = tmp_path_factory.mktemp("orthanc-dimse")
    with OrthancDimse(folder=folder) as server:
        server.upload(datasets + compressed)
        yield PacsData(server, datasets, compressed)


@pytest.fixture(scope="module")
def dcmqrscp_pacs() -> Iterator[PacsData]:
    message = "dcmtk's dcmqrscp is not installed (apt-get install dcmtk)"
    _require(dcmtk_available(), "DATASOURCES_REQUIRE_DCMTK", message)
    datasets = [ds for spec in DATASET_SPECS for ds in make_study(spec)]
    with Dcmqrscp() as server:
        statuses = server.upload(datasets)
        assert statuses == [0] * len(datasets), server.log_tail()
        yield PacsData(server, datasets)


#: Every host :func:`dimse_host` made and nobody closed yet, oldest first.
_MADE: list[Any] = []


def dimse_host(configuration: dict[str, Any], name: str = "pacs") -> Any:
    from datasources import Host

    entry = {"namespace": "default.dataSourcesModule.dimse", "sourceName": name, "configuration": configuration}
    host = Host({"dataSources": [entry], "defaultDataSourceName": name})
    _MADE.append(host)
    return host


def close_hosts(hosts: list[Any]) -> None:
    """Release the pooled associations of every initialized source (an uninitialized one is left alone:
    using it would connect first)."""
    for host in hosts:
        for info in host.data_sources:
            if info.initialized:
                data_source = host.get_data_source(info.source_name)
                if "close" in data_source.helpers:
                    data_source.helpers.close()


@pytest.fixture(autouse=True)
def _close_dimse_hosts() -> Iterator[None]:
    """Close the hosts a test made once it is done.

    An open association keeps pynetdicom's reactor and association threads polling; left over
    from test after test they starve whatever runs next of the GIL (a STOW under tracemalloc
    took 50 s after the C-MOVE test, 3 s alone). Module fixtures are set up before this
    function-scoped fixture, so their hosts are not in the slice and live on until the module ends.
    """
    mark = len(_MADE)
    yield
    made = _MADE[mark:]
    del _MADE[mark:]
    close_hosts(made)
