"""The conformance kit: the whole data-source contract, checked against any configured source.

Point it at a host, the source's name and a few studies known to be in it; it checks QIDO
matching semantics, the value contract, that ``retrieve.series.metadata`` fills the store with
what the searches return, image ids, frames byte-exact with their transfer syntax, typed errors
and helpers. Importing this package does not import pytest: :class:`SourceConformance` is a
plain class whose ``test_*`` methods pytest collects in a subclass. See docs/plugin-authors.md.
"""

from __future__ import annotations

from .checks_query import ConformanceError, check_instance_search, check_series_search, check_study_search
from .checks_retrieve import check_errors, check_frames, check_helpers, check_image_ids, check_metadata, read_frames
from .suite import CHECKS, SourceConformance, run_checks
from .target import ExpectedFrames, KnownStudy, Target, frames_from_files, known_from_files
from .values import value_problems

__all__ = [
    "CHECKS",
    "ConformanceError",
    "ExpectedFrames",
    "KnownStudy",
    "SourceConformance",
    "Target",
    "check_errors",
    "check_frames",
    "check_helpers",
    "check_image_ids",
    "check_instance_search",
    "check_metadata",
    "check_series_search",
    "check_study_search",
    "frames_from_files",
    "known_from_files",
    "read_frames",
    "run_checks",
    "value_problems",
]
