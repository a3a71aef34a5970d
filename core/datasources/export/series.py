"""Export one series: its metadata hashed, then (when it changed) frames, bulk data, thumbnail, metadata.

Frames are read and written by ``workers`` threads with at most two instances per thread in
flight, so memory holds a few instances' pixels whatever the series' size. The metadata is
streamed into its gzip file one instance at a time, after the frames it describes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import NotSupportedError, safe_message
from .layout import (
    AVAILABLE_TS,
    InstancePlan,
    dataset_digest,
    frame_path,
    instance_dataset,
    series_dir,
    study_dir,
)
from .reader import SourceReader
from .tree import Tree

__all__ = ["SeriesOutcome", "export_series"]

log = logging.getLogger("datasources.export")

#: Frames asked of the source in one call (a 1000-frame instance is not read whole).
FRAMES_PER_CALL = 16
#: What an instance row holds (the QIDO-RS instance attributes, PS3.18 Table 6.7.1-2b, and its transfer syntax).
INSTANCE_TAGS = (
    "00080005", "00080016", "00080018", "00083002", "0020000D", "0020000E", "00200013", "00280008", "00280010",
    "00280011", "00280100",
)  # fmt: skip


@dataclass
class SeriesOutcome:
    uid: str
    instances: int
    digest: str
    written: bool
    modality: str | None = None
    frames: int = 0
    bytes: int = 0
    files: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def _thumbnail_pick(instances: list[dict[str, Any]], plans: list[InstancePlan]) -> str | None:
    for instance, plan in zip(instances, plans, strict=True):
        if plan.has_pixels and instance.get("Rows") and instance.get("Columns"):
            return plan.sop
    return None


class _Writer:
    """The write phase of one series (frames, bulk data, thumbnail), run on a thread pool."""

    def __init__(self, tree: Tree, reader: SourceReader, study: str, series: str, thumbnail_sop: str | None) -> None:
        self.tree, self.reader, self.study, self.series = tree, reader, study, series
        self.thumbnail_sop = thumbnail_sop
        self.learned_ts: dict[str, str] = {}
        self.lock = threading.Lock()
        self.files: set[str] = set()
        self.frames = 0
        self.bytes = 0
        self.warnings: list[str] = []

    def _put(self, path: str, data: bytes) -> None:
        self.tree.write(path, data)
        with self.lock:
            self.files.add(path)
            self.bytes += len(data)

    def instance(self, instance: Mapping[str, Any], plan: InstancePlan) -> None:
        from ..gateway.frames import guess_native, transfer_syntax_of
        from ..transfer import label_of

        if plan.has_pixels:
            for start in range(1, plan.frames + 1, FRAMES_PER_CALL):
                numbers = list(range(start, min(plan.frames, start + FRAMES_PER_CALL - 1) + 1))
                frames = self.reader.frames(self.study, self.series, plan.sop, numbers, instance)
                for number, frame in zip(numbers, frames, strict=True):
                    self._put(frame_path(self.study, self.series, plan.sop, number), frame)
                    if number == 1:
                        if plan.transfer_syntax is None:
                            # the frame's own label, else the metadata's, else native by its size
                            ts = label_of(frame) or transfer_syntax_of(instance) or guess_native(frame, instance)
                            if ts:
                                with self.lock:
                                    self.learned_ts[plan.sop] = ts
                        if plan.sop == self.thumbnail_sop:
                            self._thumbnail(frame, instance)
                with self.lock:
                    self.frames += len(frames)
        for item in plan.bulk:
            self._put(item.target, self.reader.bulk(item.uri, item.keyword, self.study, self.series))

    def _thumbnail(self, frame: bytes, instance: Mapping[str, Any]) -> None:
        try:
            from ..gateway.render import render_frame

            image = render_frame(frame, instance, viewport=(128, 128), media_type="image/jpeg", auto_window=True)
        except (NotSupportedError, ValueError, OSError) as exc:
            message = f"series {self.series}: no thumbnail ({safe_message(exc)})"
            log.info("export: %s", message)
            with self.lock:
                self.warnings.append(message)
            return
        self._put(f"{series_dir(self.study, self.series)}/thumbnail", image)


def _run_bounded(
    work: Callable[[dict[str, Any], InstancePlan], None],
    pairs: list[tuple[dict[str, Any], InstancePlan]],
    workers: int,
    done: Callable[[int], None],
) -> None:
    """``work`` over every pair on ``workers`` threads, at most ``2 * workers`` in flight; the first error stops it."""
    slots = threading.BoundedSemaphore(max(1, workers) * 2)
    failures: list[BaseException] = []

    def finished(future: Future[None]) -> None:
        slots.release()
        exc = future.exception()
        if exc is not None:
            failures.append(exc)
        else:
            done(1)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="export") as pool:
        for instance, plan in pairs:
            slots.acquire()
            if failures:
                slots.release()
                break
            pool.submit(work, instance, plan).add_done_callback(finished)
    if failures:
        raise failures[0]


def export_series(
    tree: Tree,
    reader: SourceReader,
    study: str,
    row: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    *,
    workers: int,
    done: Callable[[int], None],
) -> SeriesOutcome:
    """Export a series unless its metadata hash and instance count are the ones recorded (``previous``)."""
    series = str(row["SeriesInstanceUID"])
    instances = reader.instances(study, series)
    digest = hashlib.sha256()
    plans = []
    for instance in instances:
        dataset, plan = instance_dataset(instance, study, series)
        digest.update(dataset_digest(dataset))
        plans.append(plan)
    outcome = SeriesOutcome(series, len(instances), digest.hexdigest(), False, _modality(row, instances))
    base = series_dir(study, series)
    if (
        previous is not None
        and previous.get("hash") == outcome.digest
        and previous.get("instances") == outcome.instances
        and tree.exists(f"{base}/metadata.gz")
    ):
        done(len(instances))
        return outcome
    writer = _Writer(tree, reader, study, series, _thumbnail_pick(instances, plans))
    _run_bounded(writer.instance, list(zip(instances, plans, strict=True)), workers, done)
    rows: list[dict[str, Any]] = []
    with tree.open_gzip(f"{base}/metadata.gz") as stream:
        stream.write(b"[")
        for index, instance in enumerate(instances):
            dataset, plan = instance_dataset(instance, study, series)
            learned = writer.learned_ts.get(plan.sop)
            if learned and AVAILABLE_TS not in dataset:
                dataset[AVAILABLE_TS] = {"vr": "UI", "Value": [learned]}
            stream.write(b"," if index else b"")
            stream.write(orjson.dumps(dict(sorted(dataset.items()))))
            rows.append({tag: dataset[tag] for tag in INSTANCE_TAGS if tag in dataset})
        stream.write(b"]")
    writer.files.add(f"{base}/metadata.gz")
    tree.write_json_gz(f"{base}/instances/index.json.gz", rows)  # cut from the metadata, as static-wado does
    writer.files.add(f"{base}/instances/index.json.gz")
    outcome.written = True
    outcome.frames, outcome.bytes, outcome.files, outcome.warnings = (
        writer.frames,
        writer.bytes,
        writer.files,
        writer.warnings,
    )
    return outcome


def _modality(row: Mapping[str, Any], instances: list[dict[str, Any]]) -> str | None:
    value = row.get("Modality") or (instances[0].get("Modality") if instances else None)
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value else None


def stale_files(tree: Tree, study: str, outcome: SeriesOutcome) -> list[str]:
    """Files of a rewritten series that this run did not write (old instances, a killed run's leftovers)."""
    keep = outcome.files
    under = tree.files_under(series_dir(study, outcome.uid)) + tree.files_under(
        f"{study_dir(study)}/bulkdata/{outcome.uid}"
    )
    return [path for path in under if path not in keep]
