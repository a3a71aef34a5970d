"""Export a source to a static DICOMweb tree: study by study, the study list last, then pruning.

A study is written series by series; its indexes and ``export.json`` (the counts and content
hashes a later run compares) follow its series, and the study list follows every study. So a
run killed at any point leaves the tree a reader can use: the previous study list, each file
whole, and the next run redoes exactly what was not recorded as done.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DataSourcesError, InvalidQueryError, NotFoundError, safe_message
from .layout import STUDY_LIST, row_uid, series_dir, series_row, study_dir, study_row
from .reader import SourceReader
from .report import ExportProgress, ExportReport, StudyOutcome
from .series import SeriesOutcome, export_series, stale_files
from .tree import TMP_MARK, Tree

__all__ = ["export_static_wado"]

log = logging.getLogger("datasources.export")
FORMAT = 1


def _count(row: Mapping[str, Any], key: str) -> int | None:
    value = row.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def export_study(
    tree: Tree, reader: SourceReader, row: Mapping[str, Any], *, workers: int, progress: ExportProgress
) -> tuple[StudyOutcome, dict[str, Any]]:
    """One study into the tree (only its changed series); its outcome and its row for the study list."""
    uid = str(row["StudyInstanceUID"])
    base = study_dir(uid)
    manifest = tree.read_json(f"{base}/export.json", {})
    previous = manifest.get("series", {}) if isinstance(manifest, dict) else {}
    rows = reader.series_rows(uid)
    if not rows:
        raise NotFoundError(f"study {uid} has no series in {reader.name!r}")
    outcomes: list[SeriesOutcome] = []
    try:
        for series in rows:
            done = lambda n: progress.instances_done(uid, n)  # noqa: E731
            outcomes.append(
                export_series(tree, reader, uid, series, previous.get(series["SeriesInstanceUID"]), workers=workers,
                              done=done)
            )  # fmt: skip
    finally:
        reader.forget(uid)
    instances = sum(o.instances for o in outcomes)
    modalities = list(dict.fromkeys(o.modality for o in outcomes if o.modality))
    new_row = study_row(row, len(outcomes), instances, modalities)
    series_now = {o.uid: {"hash": o.digest, "instances": o.instances} for o in outcomes}
    gone = [se for se in previous if se not in series_now]
    changed = any(o.written for o in outcomes) or bool(gone) or not tree.exists(f"{base}/index.json.gz")
    outcome = StudyOutcome(
        uid,
        "written" if changed else "unchanged",
        series=len(outcomes),
        instances=instances,
        series_written=sum(o.written for o in outcomes),
        frames=sum(o.frames for o in outcomes),
        bytes=sum(o.bytes for o in outcomes),
        warnings=[w for o in outcomes for w in o.warnings],
    )
    if not changed:
        return outcome, new_row
    series_list = [series_row(r, uid, o.instances) for r, o in zip(rows, outcomes, strict=True)]
    tree.write_json_gz(f"{base}/series/index.json.gz", series_list)
    tree.write_json_gz(f"{base}/index.json.gz", [new_row])
    study_hash = hashlib.sha256("".join(f"{k}:{v['hash']}" for k, v in sorted(series_now.items())).encode())
    tree.write(
        f"{base}/export.json",
        _json({
            "format": FORMAT,
            "StudyInstanceUID": uid,
            "source": reader.name,
            "counts": {"series": len(outcomes), "instances": instances},
            "hash": study_hash.hexdigest(),
            "series": series_now,
        }),
    )  # fmt: skip
    # the new indexes are in place: what only the old ones named can go
    for o in outcomes:
        if o.written:
            tree.remove(stale_files(tree, uid, o))
    for se in gone:
        tree.remove_folder(series_dir(uid, se))
        tree.remove_folder(f"{base}/bulkdata/{se}")
    tree.remove(p for p in tree.files_under(base) if TMP_MARK in p)  # a killed run's, whatever it was writing
    return outcome, new_row


def _json(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def export_static_wado(
    host: Any,
    dest: str,
    *,
    source: str | None = None,
    filters: Mapping[str, Any] | None = None,
    studies: Sequence[str] | None = None,
    prune: bool = False,
    workers: int = 4,
    progress: ExportProgress | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Export the studies of ``source`` that match ``filters`` (and ``studies``) to ``dest``.

    ``dest`` is a folder or an fsspec URL. A study that fails is reported in the result and
    the others are still exported; the study list keeps a failed study's previous row.
    ``prune`` removes from the tree every study this run did not select.
    """
    if workers < 1:
        raise InvalidQueryError(f"workers must be 1 or more, not {workers}")
    started = time.perf_counter()
    progress = progress or ExportProgress()
    tree = Tree(dest, **dict(storage_options or {}))
    data_source = host.get_data_source(source)
    reader = SourceReader(host, data_source)
    report = ExportReport(tree.dest, reader.name)
    rows = reader.studies(filters, studies)
    old_list = tree.read_json(STUDY_LIST, [])
    if not isinstance(old_list, list):
        old_list = []
    old_rows = {row_uid(r, "0020000D"): r for r in old_list if isinstance(r, dict)}
    new_rows: dict[str, dict[str, Any]] = {}
    progress.studies(len(rows))
    for row in rows:
        uid = str(row["StudyInstanceUID"])
        progress.study_started(uid, _count(row, "NumberOfStudyRelatedInstances"))
        try:
            outcome, new_rows[uid] = export_study(tree, reader, row, workers=workers, progress=progress)
        except (DataSourcesError, OSError, ValueError) as exc:
            log.warning("export: study %s failed: %s", uid, safe_message(exc))
            outcome = StudyOutcome(uid, "failed", error=f"{type(exc).__name__}: {safe_message(exc)}")
            if uid in old_rows:
                new_rows[uid] = old_rows[uid]  # its previous export stays listed
        report.studies.append(outcome)
        progress.study_finished(outcome)
    selected = [str(r["StudyInstanceUID"]) for r in rows]
    chosen = set(selected)
    listed: list[dict[str, Any]] = []
    for uid, old in old_rows.items():
        if uid in new_rows:
            listed.append(new_rows[uid])
        elif not prune and uid is not None:
            listed.append(old)
    listed += [new_rows[uid] for uid in selected if uid in new_rows and uid not in old_rows]
    if listed != old_list or not tree.exists(STUDY_LIST):
        tree.write_json_gz(STUDY_LIST, listed)
    tree.remove(tree.temporary_files("studies"))
    if prune:
        kept = {row_uid(r, "0020000D") for r in listed}
        for name in tree.subfolders("studies"):
            if name not in kept and name not in chosen:
                tree.remove_folder(study_dir(name))
                if name in old_rows:
                    report.studies.append(StudyOutcome(name, "pruned"))
    report.seconds = time.perf_counter() - started
    return report
