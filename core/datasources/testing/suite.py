"""The conformance suite as a pytest base class (pytest is needed only when the tests run).

Subclass it in a test module and give it a ``conformance_target`` fixture::

    class TestMySource(SourceConformance):
        @pytest.fixture(scope="class")
        def conformance_target(self):
            host = Host({"dataSources": [...]})
            return Target(host, "mine", [KnownStudy("1.2.3", patient_name="DOE^JANE")])

Each check is one test, so a report names what broke. The checks are plain functions too
(:func:`run_checks`), for a script or another test runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .checks_query import check_instance_search, check_series_search, check_study_search
from .checks_retrieve import check_errors, check_frames, check_helpers, check_image_ids, check_metadata
from .target import Target

__all__ = ["CHECKS", "SourceConformance", "run_checks"]

#: Every check, in the order a run makes them.
CHECKS: Sequence[Callable[[Target], None]] = (
    check_study_search,
    check_series_search,
    check_instance_search,
    check_metadata,
    check_image_ids,
    check_frames,
    check_errors,
    check_helpers,
)


def run_checks(target: Target, checks: Sequence[Callable[[Target], None]] = CHECKS) -> dict[str, str | None]:
    """Run the checks; ``{check name: None when it passed, else what failed}``."""
    results: dict[str, str | None] = {}
    for check in checks:
        try:
            check(target)
        except AssertionError as exc:
            results[check.__name__] = str(exc)
        except Exception as exc:  # the source raised where the contract wants an answer
            results[check.__name__] = f"{type(exc).__name__}: {exc}"
        else:
            results[check.__name__] = None
    return results


class SourceConformance:
    """Base class of a pytest test class: the whole data-source contract, one test per check."""

    def test_study_search(self, conformance_target: Any) -> None:
        check_study_search(conformance_target)

    def test_series_search(self, conformance_target: Any) -> None:
        check_series_search(conformance_target)

    def test_instance_search(self, conformance_target: Any) -> None:
        check_instance_search(conformance_target)

    def test_metadata_fills_the_store(self, conformance_target: Any) -> None:
        check_metadata(conformance_target)

    def test_image_ids(self, conformance_target: Any) -> None:
        check_image_ids(conformance_target)

    def test_frames(self, conformance_target: Any) -> None:
        check_frames(conformance_target)

    def test_typed_errors(self, conformance_target: Any) -> None:
        check_errors(conformance_target)

    def test_helpers(self, conformance_target: Any) -> None:
        check_helpers(conformance_target)
