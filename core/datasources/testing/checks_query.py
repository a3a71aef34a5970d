"""Conformance checks of the QIDO side: matching semantics, paging, includefield, typed errors, value types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InvalidQueryError, NotFoundError
from .target import KnownStudy, Target
from .values import value_problems

__all__ = ["ConformanceError", "check_instance_search", "check_series_search", "check_study_search"]

UNKNOWN_UID = "1.2.826.0.1.3680043.10.1081.999999999"


class ConformanceError(AssertionError):
    """A source departs from the data-source contract; the message says where and how."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


def _uids(rows: list[dict[str, Any]], key: str = "StudyInstanceUID") -> list[str]:
    return [str(r.get(key)) for r in rows]


def _types(rows: list[dict[str, Any]], level: str, what: str) -> None:
    for row in rows:
        problems = value_problems(row, level)
        expect(not problems, f"{what}: a {level} row breaks the value contract: {'; '.join(problems)}")


def _alphabetic(known: KnownStudy) -> str | None:
    return known.patient_name.split("=", 1)[0] if known.patient_name else None


def _day_after(date: str) -> str:
    import datetime as dt

    day = dt.date(int(date[:4]), int(date[4:6]), int(date[6:8])) + dt.timedelta(days=1)
    return day.strftime("%Y%m%d")


def _finds(search: Callable[..., list[dict[str, Any]]], uid: str, what: str, **filters: Any) -> list[dict[str, Any]]:
    rows = search(dict(filters))
    expect(uid in _uids(rows), f"study search {filters} should find {uid} ({what}); it found {_uids(rows)}")
    return rows


def _misses(search: Callable[..., list[dict[str, Any]]], uid: str, what: str, **filters: Any) -> None:
    rows = search(dict(filters))
    expect(uid not in _uids(rows), f"study search {filters} should not find {uid} ({what})")


def check_study_search(target: Target) -> None:
    """Every known study is found, by UID, UID list, patient, name wildcards and PN, dates, modality."""
    search = target.data_source.query.studies.search
    everything = search()
    _types(everything, "study", "query.studies.search()")
    found = _uids(everything)
    for known in target.studies:
        uid = known.study_instance_uid
        expect(uid in found, f"query.studies.search() should list the known study {uid}")
        exact = search({"StudyInstanceUID": uid})
        expect(_uids(exact) == [uid], f"a search by StudyInstanceUID={uid} should give exactly it, not {_uids(exact)}")
        if known.patient_id:
            rows = _finds(search, uid, "exact PatientID", PatientID=known.patient_id)
            expect(all(r.get("PatientID") == known.patient_id for r in rows), "PatientID must match exactly")
            _misses(search, uid, "another PatientID", PatientID=known.patient_id + "X")
        name = _alphabetic(known)
        if name:
            family = name.split("^", 1)[0]
            _finds(search, uid, "PN exact, with ^", PatientName=name)
            _finds(search, uid, "a trailing * wildcard", PatientName=family[:2] + "*")
            _finds(search, uid, "PN matching is case-insensitive", PatientName=family[:2].lower() + "*")
            if len(family) > 1:
                _finds(search, uid, "a ? wildcard", PatientName="?" + family[1:] + "*")
            _misses(search, uid, "a name that does not match", PatientName="ZZQ" + family + "*")
        if known.study_date:
            date = known.study_date
            _finds(search, uid, "an exact date", StudyDate=date)
            _finds(search, uid, "a closed range", StudyDate=f"{date}-{date}")
            _finds(search, uid, "an open range from", StudyDate=f"{date}-")
            _finds(search, uid, "an open range to", StudyDate=f"-{date}")
            _misses(search, uid, "a range after the study", StudyDate=f"{_day_after(date)}-")
        for modality in known.modalities:
            _finds(search, uid, "ModalitiesInStudy", ModalitiesInStudy=modality)
        row = next(r for r in everything if r.get("StudyInstanceUID") == uid)
        if known.modalities:
            expect(
                set(row.get("ModalitiesInStudy") or ()) >= set(known.modalities),
                f"study {uid}: ModalitiesInStudy {row.get('ModalitiesInStudy')!r} lacks {known.modalities}",
            )
    if len(target.studies) >= 2:
        pair = [s.study_instance_uid for s in target.studies[:2]]
        rows = search({"StudyInstanceUID": pair})
        expect(sorted(_uids(rows)) == sorted(pair), f"a UID list {pair} should find both, found {_uids(rows)}")
    _check_paging(search, everything)
    some = target.studies[0].study_instance_uid if target.studies else None
    if some:
        rows = search({"StudyInstanceUID": some, "includefield": "all"})
        expect(_uids(rows) == [some], "includefield=all must not change which studies match")
    try:
        search({"NoSuchKeyword": "x"})
    except InvalidQueryError:
        pass
    else:
        raise ConformanceError("an unknown search key must raise InvalidQueryError, not be ignored")


def _check_paging(search: Callable[..., list[dict[str, Any]]], everything: list[dict[str, Any]]) -> None:
    total = len(everything)
    first = search({"limit": 1})
    expect(len(first) == min(1, total), f"limit=1 gave {len(first)} rows")
    expect(search({"offset": total}) == [], f"offset={total} (past the end) should give no row")
    if total <= 20:
        pages = [uid for i in range(total) for uid in _uids(search({"limit": 1, "offset": i}))]
        expect(sorted(pages) == sorted(_uids(everything)), "pages of limit=1 should together give every study once")


def check_series_search(target: Target) -> None:
    """Series of each known study: counts, modality filter, UID filter; an unknown study finds none."""
    ds = target.data_source
    for known in target.studies:
        uid = known.study_instance_uid
        rows = ds.query.series.search(uid)
        _types(rows, "series", f"query.series.search({uid})")
        if known.series_count is not None:
            expect(
                len(rows) == known.series_count, f"study {uid} has {known.series_count} series, search gave {len(rows)}"
            )
        for row in rows[:3]:
            series_uid = row["SeriesInstanceUID"]
            only = ds.query.series.search(uid, {"SeriesInstanceUID": series_uid})
            expect(
                _uids(only, "SeriesInstanceUID") == [series_uid], f"SeriesInstanceUID={series_uid} should find only it"
            )
            if row.get("Modality"):
                same = ds.query.series.search(uid, {"Modality": row["Modality"]})
                expect(
                    series_uid in _uids(same, "SeriesInstanceUID"),
                    f"Modality={row['Modality']} should find {series_uid}",
                )
                expect(all(r.get("Modality") == row["Modality"] for r in same), "Modality must match exactly")
    try:
        rows = ds.query.series.search(UNKNOWN_UID)
    except NotFoundError:
        return
    expect(rows == [], f"series of an unknown study: [] or NotFoundError, not {rows!r}")


def check_instance_search(target: Target) -> None:
    """Instances of each known series add up to the known count; SOPInstanceUID filter."""
    ds = target.data_source
    for known in target.studies:
        uid = known.study_instance_uid
        total = 0
        for row in ds.query.series.search(uid):
            series_uid = row["SeriesInstanceUID"]
            instances = ds.query.instances.search(uid, series_uid)
            _types(instances, "instance", f"query.instances.search({uid}, {series_uid})")
            total += len(instances)
            if instances:
                sop = instances[0]["SOPInstanceUID"]
                only = ds.query.instances.search(uid, series_uid, {"SOPInstanceUID": sop})
                expect(_uids(only, "SOPInstanceUID") == [sop], f"SOPInstanceUID={sop} should find only it")
        if known.instance_count is not None:
            expect(
                total == known.instance_count,
                f"study {uid} has {known.instance_count} instances, searches gave {total}",
            )
    try:
        rows = ds.query.instances.search(UNKNOWN_UID, UNKNOWN_UID)
    except NotFoundError:
        return
    expect(rows == [], f"instances of an unknown series: [] or NotFoundError, not {rows!r}")
