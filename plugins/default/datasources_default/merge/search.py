"""Fan-out search: every member asked at once, the rows merged by UID (the first member wins).

A member that fails is reported in the result's ``failures``, not fatal; when every member
fails, :class:`AllMembersFailedError` (or the members' common ``NotSupportedError`` /
``InvalidQueryError``) is raised. Series rows are tagged with their member (``TAG``) and the
routes learnt go to :mod:`.routing`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from datasources.errors import HTTPError, InvalidQueryError, NotFoundError, NotSupportedError
from datasources.interface import DataSource
from datasources.query import SearchQuery, parse_search

from .config import MergeConfig
from .results import AllMembersFailedError, MergedResults, safe_message
from .routing import TAG, first_value

__all__ = ["NOTHING", "FanOutSearch"]

log = logging.getLogger("datasources.merge")

T = TypeVar("T")

NOTHING: Any = object()  # a member that does not hold the study asked for


def _not_here(exc: BaseException) -> bool:
    """A series/instance search that fails because the member simply does not hold the study."""
    return isinstance(exc, NotFoundError) or (isinstance(exc, HTTPError) and exc.status == 404)


class FanOutSearch:
    """The merge source's searches (a mixin of :class:`~.source.MergeSource`, whose state it uses)."""

    # state and members: MergeSource's
    config: MergeConfig
    _lock: threading.Lock
    _pool: ThreadPoolExecutor | None
    _last_failures: dict[str, BaseException]

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                workers = max(1, min(self.config.max_workers, len(self.config.data_source_names)))
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"merge-{self.name}")
            return self._pool

    def fan_out(
        self,
        operation: str,
        call: Callable[[str, DataSource], T],
        names: Sequence[str] | None = None,
        *,
        absent_is_empty: bool = False,
    ) -> tuple[dict[str, T], dict[str, BaseException]]:
        """Run ``call(name, member)`` on every member at once; results and failures, in member order.

        With ``absent_is_empty``, a member answering "no such study" gives ``NOTHING``
        rather than a failure. Raises when every member failed.
        """
        chosen = list(self.config.data_source_names if names is None else names)

        def run(name: str) -> T:
            ds = self.member(name)  # a member that cannot start is a failure, whatever the error
            try:
                return call(name, ds)
            except Exception as exc:
                if absent_is_empty and _not_here(exc):
                    return NOTHING
                raise

        outcomes: list[tuple[str, T | None, BaseException | None]] = []
        if len(chosen) == 1:
            try:
                outcomes.append((chosen[0], run(chosen[0]), None))
            except Exception as exc:
                outcomes.append((chosen[0], None, exc))
        else:
            pool = self._executor()
            futures: list[tuple[str, Future[T]]] = [(n, pool.submit(run, n)) for n in chosen]
            for name, future in futures:
                try:
                    outcomes.append((name, future.result(), None))
                except Exception as exc:
                    outcomes.append((name, None, exc))
        results: dict[str, T] = {}
        failures: dict[str, BaseException] = {}
        for name, value, error in outcomes:
            if error is not None:
                failures[name] = error
            else:
                results[name] = value  # type: ignore[assignment]
        with self._lock:
            self._last_failures = dict(failures)
        if failures and not results:
            raise self._all_failed(operation, failures)
        for name, exc in failures.items():
            log.warning(
                "merge source %r: member %r failed in %s (%s); the other members' results are returned",
                self.name,
                name,
                operation,
                safe_message(exc),
            )
        return results, failures

    def _all_failed(self, operation: str, failures: dict[str, BaseException]) -> Exception:
        errors = list(failures.values())
        if all(isinstance(e, NotSupportedError) for e in errors):
            reasons = "; ".join(f"{n!r}: {e}" for n, e in failures.items())
            return NotSupportedError(operation, self.name, f"no member supports it ({reasons})")
        if all(isinstance(e, InvalidQueryError) for e in errors):
            return errors[0]  # the caller's query is wrong, whoever answered
        return AllMembersFailedError(self.name, operation, failures)

    def last_failures(self) -> dict[str, BaseException]:
        """The failures of the latest fan-out (any thread); use a result's ``failures`` for a given call."""
        with self._lock:
            return dict(self._last_failures)

    @staticmethod
    def _merge(
        results: Mapping[str, Any],
        key: str,
        failures: Mapping[str, BaseException],
        query: SearchQuery | None = None,
        tag: bool = False,
    ) -> MergedResults:
        seen: dict[str, list[str]] = {}
        out: list[Any] = []
        for name, rows in results.items():
            if rows is NOTHING or rows is None:
                continue
            for row in rows:
                uid = row.get(key) if isinstance(row, Mapping) else None
                if not isinstance(uid, str) or not uid:
                    out.append(row)  # nothing to de-duplicate it by
                    continue
                owners = seen.get(uid)
                if owners is None:
                    seen[uid] = [name]
                    out.append({**row, TAG: [name]} if tag else row)
                elif name not in owners:
                    owners.append(name)
        page = query.page(out) if query is not None else out
        return MergedResults(page, failures, {uid: tuple(names) for uid, names in seen.items()})

    @staticmethod
    def _member_filters(q: SearchQuery) -> dict[str, Any]:
        """What each member is asked: the filters, and enough rows to fill the merged page."""
        filters: dict[str, Any] = dict(q.filters)
        if q.limit is not None:
            # the merged page [offset, offset+limit) only ever needs each member's first offset+limit rows
            filters["limit"] = q.offset + q.limit
        if q.fuzzymatching:
            filters["fuzzymatching"] = True
        if q.includefield:
            filters["includefield"] = list(q.includefield)
        return filters

    def search_studies(self, filters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> MergedResults:
        q = parse_search("study", filters, **kwargs)
        asked = self._member_filters(q)
        results, failures = self.fan_out("query.studies.search", lambda n, ds: ds.query.studies.search(asked))
        merged = self._merge(results, "StudyInstanceUID", failures, q)
        for uid, holders in merged.sources.items():
            self._remember_study(uid, holders)
        return merged

    def search_series(
        self, study_instance_uid: str, filters: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> MergedResults:
        if not isinstance(study_instance_uid, str) or not study_instance_uid:
            raise InvalidQueryError("query.series.search needs a StudyInstanceUID")
        q = parse_search("series", filters, **kwargs)
        asked = self._member_filters(q)
        results, failures = self.fan_out(
            "query.series.search",
            lambda n, ds: ds.query.series.search(study_instance_uid, asked),
            absent_is_empty=True,
        )
        merged = self._merge(results, "SeriesInstanceUID", failures, q, tag=True)
        holders = [n for n, rows in results.items() if rows is not NOTHING and rows]
        if holders:
            self._remember_study(study_instance_uid, holders)
        store = self._host().metadata_store
        for row in merged:
            uid = row.get("SeriesInstanceUID") if isinstance(row, Mapping) else None
            if isinstance(uid, str) and uid:
                self._remember(uid, first_value(row[TAG]))
                # as OHIF: a series already in the store learns where it comes from
                store.update_series_metadata(
                    {"StudyInstanceUID": study_instance_uid, "SeriesInstanceUID": uid, TAG: row[TAG]}
                )
        return merged

    def search_instances(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        filters: Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> MergedResults:
        if not isinstance(study_instance_uid, str) or not study_instance_uid:
            raise InvalidQueryError("query.instances.search needs a StudyInstanceUID")
        q = parse_search("instance", filters, **kwargs)
        asked = self._member_filters(q)
        results, failures = self.fan_out(
            "query.instances.search",
            lambda n, ds: ds.query.instances.search(study_instance_uid, series_instance_uid, asked),
            absent_is_empty=True,
        )
        merged = self._merge(results, "SOPInstanceUID", failures, q)
        for row in merged:
            if not isinstance(row, Mapping):
                continue
            sop, series = row.get("SOPInstanceUID"), row.get("SeriesInstanceUID") or series_instance_uid
            if isinstance(sop, str) and isinstance(series, str) and series and sop in merged.sources:
                self._remember(series, merged.sources[sop][0], replace=False)
        return merged
