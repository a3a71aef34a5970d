"""The benchmarks' Orthanc: one set of studies, loaded once and kept between runs.

Loading 9,100 instances takes minutes on 2 shared cores, more than the benchmarks themselves,
so the database is built once under ``$TMPDIR/datasources-bench-<uid>/<digest of the studies>``
and reused by every benchmark and every later run (Orthanc opens it as it left it; the
benchmarks only read). ``DATASOURCES_BENCH_FRESH=1`` rebuilds it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.dicomgen import StudySpec, dataset_to_bytes, iter_study  # noqa: E402
from support.orthanc import OrthancServer  # noqa: E402

__all__ = ["STUDY_A", "STUDY_B", "STUDY_C", "STUDY_D", "SINGLES", "bench_orthanc", "load"]

STUDY_A = StudySpec("benchA", n_series=1, n_instances=1000, rows=64, cols=64)
STUDY_B = StudySpec("benchB", modality="MR", n_series=10, n_instances=200, rows=64, cols=64)
STUDY_C = StudySpec("benchC", n_series=1, n_instances=5000, rows=16, cols=16)
STUDY_D = StudySpec("benchD", n_series=1, n_instances=100, rows=16, cols=16)
SINGLES = [
    StudySpec(f"bench1k-{i}", patient_name=f"PATIENT^{i:04d}", patient_id=f"P{i:05d}", n_instances=1, rows=8, cols=8)
    for i in range(1000)
]
ALL = [STUDY_A, STUDY_B, STUDY_C, STUDY_D, *SINGLES]


def load(server: OrthancServer, specs: list[StudySpec]) -> None:
    batch: list[bytes] = []
    for spec in specs:
        for ds in iter_study(spec):
            batch.append(dataset_to_bytes(ds))
            if len(batch) >= 200:
                server.upload(batch, workers=2)
                batch = []
    if batch:
        server.upload(batch, workers=2)


class KeptOrthanc(OrthancServer):
    """An Orthanc whose database lives in ``folder/kept``: ``start`` wipes only ``folder/db``."""

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["StorageDirectory"] = config["IndexDirectory"] = str(self.folder / "kept")
        return config


@contextmanager
def bench_orthanc() -> Iterator[OrthancServer]:
    """A running Orthanc on 127.0.0.1 holding :data:`ALL`, from the kept database when there is one."""
    digest = hashlib.sha256(repr(ALL).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"datasources-bench-{os.getuid()}" / digest
    folder.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    # one Orthanc at a time on the kept database: two on one SQLite index corrupt it
    with open(folder.parent / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with _kept(folder) as server:
            yield server


@contextmanager
def _kept(folder: Path) -> Iterator[OrthancServer]:
    ready = folder / "loaded"
    if os.environ.get("DATASOURCES_BENCH_FRESH") == "1" or not ready.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)
        with KeptOrthanc(folder=folder) as server:
            start = time.perf_counter()
            load(server, ALL)
            took = time.perf_counter() - start
            print(f"loaded {server.instance_count()} instances in {took:.1f} s (kept in {folder})", file=sys.stderr)
        ready.write_text("ok\n")
    with KeptOrthanc(folder=folder) as server:
        expected = sum(spec.n_series * spec.n_instances for spec in ALL)
        if server.instance_count() != expected:
            ready.unlink()
            raise SystemExit(f"the kept Orthanc database in {folder} is incomplete: run again to rebuild it")
        yield server
