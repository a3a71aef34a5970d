"""The conformance kit itself: importable without pytest, and it catches what it says it checks."""

from __future__ import annotations

import subprocess
import sys
import types
from typing import Any

from datasources import Host, IWebApiDataSource, Source, hookimpl
from datasources.matching import filter_records
from datasources.query import parse_search
from datasources.testing import KnownStudy, Target, run_checks, value_problems

UID = "1.2.826.0.1.3680043.10.1081.42"


def test_importing_the_kit_does_not_import_pytest() -> None:
    code = "import sys, datasources.testing; print('pytest' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_value_problems_name_each_departure_from_the_contract() -> None:
    good = {
        "StudyInstanceUID": UID,
        "ModalitiesInStudy": ["CT"],
        "PatientName": {"Alphabetic": "A^B"},
        "StudyDate": "20200101",
        "NumberOfStudyRelatedSeries": 1,
        "SliceThickness": 2.0,
        "imageId": "x",
    }
    assert value_problems(good, "study") == []
    bad = {
        "ModalitiesInStudy": "CT",
        "PatientName": "A^B",
        "StudyDate": "2020-01-01",
        "SliceThickness": "2",
        "InstanceNumber": "3",
        "Modality": ["CT"],
        "AccessionNumber": "",
        "ReferencedSeriesSequence": {"A": 1},
    }
    problems = " | ".join(value_problems(bad, "study"))
    for needle in (
        "StudyInstanceUID: missing",
        "ModalitiesInStudy: a multi-valued",
        "PatientName: a PN value",
        "StudyDate: DA is YYYYMMDD",
        "SliceThickness: DS is a float",
        "InstanceNumber: IS is an int",
        "Modality: a single-valued",
        "ReferencedSeriesSequence",
    ):
        assert needle in problems, needle


class Sloppy(Source):
    """A source with the divergences the kit exists to catch."""

    ROWS = [{"StudyInstanceUID": UID, "PatientName": {"Alphabetic": "DOE^JANE"}, "ModalitiesInStudy": "CT"}]

    def search_studies(self, filters: Any = None, /, **kwargs: Any) -> list[dict[str, Any]]:
        given = dict(filters or {}, **kwargs)
        given.pop("NoSuchKeyword", None)  # silently ignores an unknown key
        if str(given.get("PatientName", "")).islower():
            return []  # case-sensitive names
        return filter_records([dict(r) for r in self.ROWS], parse_search("study", given))

    def series_metadata(self, study_uid: str, **_: Any) -> dict[str, Any]:
        return {}  # never fills the store, never says NotFoundError


def test_run_checks_reports_a_sloppy_source() -> None:
    ext = types.ModuleType("sloppy")

    def create(configuration: Any, host: Any = None) -> Any:
        return IWebApiDataSource.from_source(Sloppy(configuration, host))

    ext.getDataSourcesModule = hookimpl(lambda: [{"name": "sloppy", "type": "other", "createDataSource": create}])
    host = Host({"dataSources": []})
    host.register_extension(ext, name="sloppy")
    host.add_data_source({"namespace": "sloppy.dataSourcesModule.sloppy", "sourceName": "s", "configuration": {}})
    results = run_checks(Target(host, "s", [KnownStudy(UID, patient_name="DOE^JANE")]))
    assert "ModalitiesInStudy: a multi-valued attribute is always a list" in results["check_study_search"]
    assert "should add the study to the host's store" in results["check_metadata"]
    assert "NotFoundError" in results["check_errors"]
    assert results["check_helpers"] is None
    Sloppy.ROWS = [{**Sloppy.ROWS[0], "ModalitiesInStudy": ["CT"]}]
    again = run_checks(Target(host, "s", [KnownStudy(UID, patient_name="DOE^JANE")]))
    assert "case-insensitive" in again["check_study_search"]
