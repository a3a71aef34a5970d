"""What an export did: one outcome per study, and the run's totals (the ``--json`` summary)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ExportProgress", "ExportReport", "StudyOutcome"]


@dataclass
class StudyOutcome:
    """``status``: ``written`` (some series changed), ``unchanged``, ``failed`` or ``pruned``."""

    uid: str
    status: str
    series: int = 0
    instances: int = 0
    series_written: int = 0
    frames: int = 0
    bytes: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    dest: str
    source: str
    studies: list[StudyOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[StudyOutcome]:
        return [s for s in self.studies if s.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.studies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "source": self.source,
            "seconds": round(self.seconds, 3),
            "written": self.count("written"),
            "unchanged": self.count("unchanged"),
            "failed": self.count("failed"),
            "pruned": self.count("pruned"),
            "instances": sum(s.instances for s in self.studies if s.status != "pruned"),
            "frames": sum(s.frames for s in self.studies),
            "bytes": sum(s.bytes for s in self.studies),
            "studies": [asdict(s) for s in self.studies],
        }


class ExportProgress:
    """Hooks an export calls as it goes (no-ops here; the CLI draws progress bars with them)."""

    def studies(self, total: int) -> None:
        """The number of studies this run looks at."""

    def study_started(self, uid: str, instances: int | None) -> None:
        """A study begins; ``instances`` is the source's count when its row gives one."""

    def instances_done(self, uid: str, count: int) -> None:
        """``count`` more instances of the current study are done (written or found unchanged)."""

    def study_finished(self, outcome: StudyOutcome) -> None:
        """A study is done, whatever its status."""
