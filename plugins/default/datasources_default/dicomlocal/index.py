"""The SQLite index of a folder of DICOM files: the queries searches and retrieves run on it.

:class:`LocalIndex` is the whole index: its file and schema (:mod:`.schema`), the scan that
brings it up to date (:mod:`.scan`), and here the reads (studies, series, instances, paths)
and the rejected series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .scan import IndexReport, Progress, ScanningIndex, Skipped, as_number, chunks
from .schema import NOT_REJECTED

__all__ = ["IndexReport", "LocalIndex", "Progress", "Skipped"]


class LocalIndex(ScanningIndex):
    """The index of one root folder. ``open()`` does the first I/O; the constructor none."""

    # -- reject --------------------------------------------------------------------------

    def reject_series(self, study_uid: str, series_uid: str) -> int:
        """Hide a series from searches and retrieves (its files stay); returns how many instances it had."""
        with self._write_lock, self._transaction() as tx:
            count = tx.execute(
                "SELECT COUNT(*) FROM instances WHERE study_uid = ? AND series_uid = ?", (study_uid, series_uid)
            ).fetchone()[0]
            if count:
                tx.execute("INSERT OR IGNORE INTO rejected VALUES (?, ?)", (study_uid, series_uid))
                self._recompute(tx, [study_uid])
        return int(count)

    def restore_series(self, study_uid: str, series_uid: str) -> bool:
        """Undo :meth:`reject_series`; ``True`` if the series was rejected."""
        with self._write_lock, self._transaction() as tx:
            changed = tx.execute(
                "DELETE FROM rejected WHERE study_uid = ? AND series_uid = ?", (study_uid, series_uid)
            ).rowcount
            if changed:
                self._recompute(tx, [study_uid])
        return bool(changed)

    def is_rejected(self, study_uid: str, series_uid: str) -> bool:
        return bool(
            self._rows("SELECT 1 FROM rejected WHERE study_uid = ? AND series_uid = ?", (study_uid, series_uid))
        )

    def rejected(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self._rows("SELECT study_uid, series_uid FROM rejected ORDER BY 1, 2")]

    # -- reading -------------------------------------------------------------------------

    def study_uids(self) -> list[str]:
        rows = self._rows("SELECT study_uid FROM studies ORDER BY study_date DESC, study_time DESC, study_uid")
        return [r[0] for r in rows]

    def study_records(self, study_uids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Study rows as QIDO returns them (``ModalitiesInStudy`` and the counts included)."""
        sql = "SELECT study_uid, n_series, n_instances, modalities, attrs FROM studies"
        order = " ORDER BY study_date DESC, study_time DESC, study_uid"
        if study_uids is None:
            rows = self._rows(sql + order)
        else:
            rows = []
            for chunk in chunks(list(dict.fromkeys(study_uids)), 500):
                marks = ",".join("?" * len(chunk))
                rows += self._rows(f"{sql} WHERE study_uid IN ({marks})", list(chunk))
        out = []
        for uid, n_series, n_instances, modalities, blob in rows:
            record = orjson.loads(blob)
            record["StudyInstanceUID"] = uid
            record["ModalitiesInStudy"] = orjson.loads(modalities)
            record["NumberOfStudyRelatedSeries"] = n_series
            record["NumberOfStudyRelatedInstances"] = n_instances
            out.append(record)
        return out

    def series_records(self, study_uid: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT series_uid, n_instances, attrs FROM series WHERE study_uid = ? "
            "ORDER BY series_number IS NULL, series_number, series_uid",
            (study_uid,),
        )
        out = []
        for uid, n_instances, blob in rows:
            record = {"StudyInstanceUID": study_uid, **orjson.loads(blob)}
            record["SeriesInstanceUID"] = uid
            record["NumberOfSeriesRelatedInstances"] = n_instances
            out.append(record)
        return out

    def instance_rows(
        self, study_uid: str, series_uids: Sequence[str] | None = None
    ) -> list[tuple[str, str, str, str | None, dict[str, Any]]]:
        """``(sop, series, path, transfer syntax, attrs)`` of visible instances, in series then instance order."""
        sql = (
            "SELECT sop_uid, series_uid, path, transfer_syntax, attrs FROM instances i "
            f"WHERE study_uid = ? AND {NOT_REJECTED}"
        )
        args: list[Any] = [study_uid]
        if series_uids:
            sql += f" AND series_uid IN ({','.join('?' * len(series_uids))})"
            args += list(series_uids)
        rows = [(r[0], r[1], r[2], r[3], orjson.loads(r[4])) for r in self._rows(sql, args)]
        rows.sort(
            key=lambda r: (_sort_number(r[4].get("SeriesNumber")), r[1], _sort_number(r[4].get("InstanceNumber")), r[2])
        )
        return rows

    def instance_records(self, study_uid: str, series_uid: str | None = None) -> list[dict[str, Any]]:
        out = []
        for sop, series, _path, ts, attrs in self.instance_rows(study_uid, [series_uid] if series_uid else None):
            record = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series, **attrs, "SOPInstanceUID": sop}
            if ts:
                record["AvailableTransferSyntaxUID"] = [ts]
            out.append(record)
        return out

    def path_of(self, sop_uid: str) -> tuple[str, str, str] | None:
        """``(study, series, relative path)`` of an instance, rejected ones included."""
        rows = self._rows("SELECT study_uid, series_uid, path FROM instances WHERE sop_uid = ?", (sop_uid,))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def indexed_path(self, rel: str) -> tuple[str, str, str] | None:
        """``(study, series, sop)`` of the instance indexed from ``rel``."""
        rows = self._rows("SELECT study_uid, series_uid, sop_uid FROM instances WHERE path = ?", (rel,))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def problems(self) -> list[Skipped]:
        return [Skipped(p, r) for p, r in self._rows("SELECT path, reason FROM skipped ORDER BY path")]


def _sort_number(value: Any) -> tuple[int, float]:
    number = as_number(value)
    return (1, 0.0) if number is None else (0, number)
