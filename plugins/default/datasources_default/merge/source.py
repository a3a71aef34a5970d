"""One data source over several configured ones, as OHIF's MergeDataSource.

Searches fan out to every member at once and are merged by UID: **the first member in
``dataSourceNames`` order that returns a UID wins** (its record is kept whole, later copies
are dropped); ``limit``/``offset`` apply to the merged list. Each series row is tagged
``RetrieveAETitle = <member name>`` (as OHIF does) and the merge source remembers which
member each series came from, so retrieve, bulk data, frames, image ids and reject go to
that member; ``store.dicom`` goes to ``defaultDataSourceName``.

A member that fails is reported, not fatal: list results are :class:`MergedResults` (a
``list``) whose ``failures`` maps member name -> exception, and a warning is logged. When
every member fails, :class:`AllMembersFailedError` names each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from datasources import Source
from datasources.errors import (
    ConfigurationError,
    HTTPError,
    InvalidQueryError,
    NotFoundError,
    NotSupportedError,
)
from datasources.interface import DataSource, IWebApiDataSource
from datasources.query import SearchQuery, parse_search
from datasources.results import SeriesLoadTask

from .. import imageids
from .config import MergeConfig, check_members
from .results import AllMembersFailedError, MergedMapping, MergedResults, safe_message

__all__ = ["TAG", "MergeSource", "create_merge_api"]

log = logging.getLogger("datasources.merge")

#: The attribute each series is tagged with: the name of the member it came from (OHIF's choice).
TAG = "RetrieveAETitle"

#: How many series -> member routes are remembered (oldest forgotten first).
MAX_ROUTES = 200_000

T = TypeVar("T")

_NOTHING: Any = object()  # a member that does not hold the study asked for


def _not_here(exc: BaseException) -> bool:
    """A series/instance search that fails because the member simply does not hold the study."""
    return isinstance(exc, NotFoundError) or (isinstance(exc, HTTPError) and exc.status == 404)


class MergeSource(Source):
    """The state of one merge source: its members, the routes it learnt, its thread pools."""

    HELPERS = ("members", "default_member", "last_failures", "source_of", "route", "close")

    def __init__(self, configuration: Mapping[str, Any], host: Any = None) -> None:
        self.config = MergeConfig.from_configuration(configuration)
        super().__init__(configuration, host)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._task_pool: ThreadPoolExecutor | None = None
        self._routes: dict[str, str] = {}  # SeriesInstanceUID -> member
        self._study_members: dict[str, tuple[str, ...]] = {}  # StudyInstanceUID -> members holding it
        self._last_failures: dict[str, BaseException] = {}
        self._init_locks = {name: threading.Lock() for name in self.config.data_source_names}

    # -- identity and members ----------------------------------------------------------------

    @property
    def name(self) -> str:
        own = self.data_source.name if self.data_source is not None else None
        return own or self.config.name or "merge"

    def members(self) -> list[str]:
        """The members' names, in ``dataSourceNames`` order (the first one wins a UID)."""
        return list(self.config.data_source_names)

    def default_member(self) -> str:
        """The member ``store.dicom`` (and anything without a route) goes to."""
        return self.config.default_data_source_name

    def _host(self) -> Any:
        if self.host is None:
            raise ConfigurationError("merge: a merge source reaches its members through a host; none was given")
        return self.host

    def validate(self) -> None:
        """Members exist, and none of them is this source (directly or through another merge)."""
        own = self.data_source.name if self.data_source is not None else None
        check_members(own, self.config, self._host())

    def member(self, name: str) -> DataSource:
        """A member, initialized (once) by the host, so its start-up errors are its own failures."""
        host = self._host()
        ds: DataSource = host.get_data_source(name)
        info = self._info(name)
        if info is not None and not info.initialized:
            with self._init_locks.setdefault(name, threading.Lock()):
                info = self._info(name)
                if info is not None and not info.initialized:
                    host.initialize_data_source(name)
        return ds

    def _info(self, name: str) -> Any:
        for info in self._host().data_sources:
            if info.source_name == name:
                return info
        return None

    # -- fan-out -----------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                workers = max(1, min(self.config.max_workers, len(self.config.data_source_names)))
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"merge-{self.name}")
            return self._pool

    def _tasks_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._task_pool is None:
                self._task_pool = ThreadPoolExecutor(
                    self.config.max_workers, thread_name_prefix=f"merge-{self.name}-load"
                )
            return self._task_pool

    def fan_out(
        self,
        operation: str,
        call: Callable[[str, DataSource], T],
        names: Sequence[str] | None = None,
        *,
        absent_is_empty: bool = False,
    ) -> tuple[dict[str, T], dict[str, BaseException]]:
        """Run ``call(name, member)`` on every member at once; results and failures, in member order.

        With ``absent_is_empty``, a member answering "no such study" gives ``_NOTHING``
        rather than a failure. Raises when every member failed.
        """
        chosen = list(self.config.data_source_names if names is None else names)

        def run(name: str) -> T:
            ds = self.member(name)  # a member that cannot start is a failure, whatever the error
            try:
                return call(name, ds)
            except Exception as exc:
                if absent_is_empty and _not_here(exc):
                    return _NOTHING
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

    # -- merging and routes ------------------------------------------------------------------

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
            if rows is _NOTHING or rows is None:
                continue
            for row in rows:
                uid = row.get(key) if isinstance(row, Mapping) else None
                if not isinstance(uid, str) or not uid:
                    out.append(row)  # nothing to de-duplicate it by
                    continue
                owners = seen.get(uid)
                if owners is None:
                    seen[uid] = [name]
                    out.append({**row, TAG: name} if tag else row)
                elif name not in owners:
                    owners.append(name)
        page = query.page(out) if query is not None else out
        return MergedResults(page, failures, {uid: tuple(names) for uid, names in seen.items()})

    def _remember(self, series_uid: str, name: str, *, replace: bool = True) -> None:
        with self._lock:
            if series_uid in self._routes:
                if not replace:
                    return
                del self._routes[series_uid]  # re-inserted last: the most recently seen is kept longest
            self._routes[series_uid] = name
            if len(self._routes) > MAX_ROUTES:
                del self._routes[next(iter(self._routes))]

    def _remember_study(self, study_uid: str, names: Sequence[str]) -> None:
        with self._lock:
            self._study_members.pop(study_uid, None)
            self._study_members[study_uid] = tuple(names)
            if len(self._study_members) > MAX_ROUTES:
                del self._study_members[next(iter(self._study_members))]

    def source_of(self, series_instance_uid: str) -> str | None:
        """The member a series was last seen coming from (``None`` if it was never seen)."""
        with self._lock:
            return self._routes.get(series_instance_uid)

    def route(
        self,
        *,
        series_uid: str | None = None,
        study_uid: str | None = None,
        instance: Any = None,
        fallback: bool = True,
    ) -> str | None:
        """Which member serves a series: the routes learnt, then a ``RetrieveAETitle`` tag naming a
        member (on the instance, then on the store's series), then the only member holding the
        study; else the default member (or ``None`` without ``fallback``)."""
        names = self.config.data_source_names
        if isinstance(instance, Mapping):
            series_uid = series_uid or instance.get("SeriesInstanceUID")
            study_uid = study_uid or instance.get("StudyInstanceUID")
        if isinstance(series_uid, str) and series_uid:
            with self._lock:
                hit = self._routes.get(series_uid)
            if hit is not None:
                return hit
        if isinstance(instance, Mapping):
            tagged = instance.get(TAG)
            if isinstance(tagged, str) and tagged in names:
                return tagged
        if isinstance(series_uid, str) and series_uid and self.host is not None:
            series = self.host.metadata_store.get_series(study_uid, series_uid)
            tagged = series.get(TAG) if series is not None else None
            if isinstance(tagged, str) and tagged in names:
                return tagged
        if isinstance(study_uid, str) and study_uid:
            with self._lock:
                holders = self._study_members.get(study_uid)
            if holders is not None and len(holders) == 1:
                return holders[0]
        return self.config.default_data_source_name if fallback else None

    def _tag_loaded(self, study_uid: str, name: str, series_uids: Sequence[str]) -> None:
        store = self._host().metadata_store
        for uid in series_uids:
            self._remember(uid, name)
            store.update_series_metadata({"StudyInstanceUID": study_uid, "SeriesInstanceUID": uid, TAG: name})

    # -- query -------------------------------------------------------------------------------

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
        holders = [n for n, rows in results.items() if rows is not _NOTHING and rows]
        if holders:
            self._remember_study(study_instance_uid, holders)
        store = self._host().metadata_store
        for row in merged:
            uid = row.get("SeriesInstanceUID") if isinstance(row, Mapping) else None
            if isinstance(uid, str) and uid:
                self._remember(uid, row[TAG])
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

    # -- retrieve ----------------------------------------------------------------------------

    def series_metadata(
        self,
        study_instance_uid: str,
        *,
        series_instance_uids: Sequence[str] | None = None,
        made_in_client: bool = False,
        return_tasks: bool = False,
        **kwargs: Any,
    ) -> MergedMapping | MergedResults:
        """Each series from the member that wins it (one load per series, never two copies).

        The study's series are listed on every member first (``query.series.search``); each
        member then loads the series it wins, all members at once.
        """
        if not isinstance(study_instance_uid, str) or not study_instance_uid:
            raise InvalidQueryError("retrieve.series.metadata needs a StudyInstanceUID")
        if isinstance(series_instance_uids, str):
            series_instance_uids = [series_instance_uids]
        wanted = list(dict.fromkeys(series_instance_uids)) if series_instance_uids else None
        rows = self.search_series(study_instance_uid)
        row_by_uid = {r["SeriesInstanceUID"]: r for r in rows if isinstance(r, Mapping) and r.get("SeriesInstanceUID")}
        plan: dict[str, list[str]] = {}
        missing: list[str] = []
        for uid in wanted if wanted is not None else list(row_by_uid):
            holders = rows.sources.get(uid)
            if not holders:
                missing.append(uid)
            else:
                plan.setdefault(holders[0], []).append(uid)
        if missing and not rows.failures:
            where = ", ".join(repr(n) for n in self.config.data_source_names)
            if not row_by_uid:
                raise NotFoundError(
                    f"study {study_instance_uid!r} is in none of the members of {self.name!r} ({where})"
                )
            raise NotFoundError(
                f"series {missing} of study {study_instance_uid!r} are in none of the members ({where})"
            )
        if not plan:
            if rows.failures:
                return MergedResults([], rows.failures) if return_tasks else MergedMapping({}, rows.failures)
            raise NotFoundError(f"study {study_instance_uid!r} is in none of the members of {self.name!r}")

        ordered = [n for n in self.config.data_source_names if n in plan]

        def series_arg(name: str) -> list[str] | None:
            if wanted is not None:
                return plan[name]
            everything = {uid for uid, holders in rows.sources.items() if name in holders}
            return None if set(plan[name]) == everything else plan[name]  # the whole study: the member's fast path

        if return_tasks:
            return self._series_tasks(
                study_instance_uid, ordered, plan, series_arg, row_by_uid, made_in_client, rows, kwargs
            )

        def load(name: str, ds: DataSource) -> Any:
            loaded = ds.retrieve.series.metadata(
                study_instance_uid, series_instance_uids=series_arg(name), made_in_client=made_in_client, **kwargs
            )
            got = list(loaded) if isinstance(loaded, Mapping) else []
            self._tag_loaded(study_instance_uid, name, [uid for uid in got if uid in plan[name]] or plan[name])
            return loaded

        results, failures = self.fan_out("retrieve.series.metadata", load, ordered)
        failures = {**rows.failures, **failures}
        merged = MergedMapping({}, failures, {uid: rows.sources[uid] for uid in row_by_uid if uid in rows.sources})
        for name, loaded in results.items():
            if isinstance(loaded, Mapping):
                for uid, summary in loaded.items():
                    if uid not in merged:
                        merged[uid] = {**summary, TAG: name} if isinstance(summary, Mapping) else summary
        if wanted is None and not failures:
            self._host().metadata_store.set_study_loaded(study_instance_uid)
        return merged

    def _series_tasks(
        self,
        study_uid: str,
        ordered: list[str],
        plan: dict[str, list[str]],
        series_arg: Callable[[str], list[str] | None],
        row_by_uid: Mapping[str, Mapping[str, Any]],
        made_in_client: bool,
        rows: MergedResults,
        kwargs: Mapping[str, Any],
    ) -> MergedResults:
        """One lazy task per series: the member's own tasks, or one load per series for eager members."""

        def tasks_of(name: str, ds: DataSource) -> list[SeriesLoadTask[Any]]:
            try:
                theirs = ds.retrieve.series.metadata(
                    study_uid, series_instance_uids=series_arg(name), made_in_client=made_in_client,
                    return_tasks=True, **kwargs,
                )  # fmt: skip
            except (ConfigurationError, NotSupportedError):
                theirs = None  # an eager member: load its series one by one
            if isinstance(theirs, list) and all(isinstance(t, SeriesLoadTask) for t in theirs):
                return [self._wrap_task(study_uid, name, t) for t in theirs]
            return [
                self._eager_task(study_uid, name, uid, row_by_uid.get(uid, {}), made_in_client, kwargs)
                for uid in plan[name]
            ]

        results, failures = self.fan_out("retrieve.series.metadata", tasks_of, ordered)
        out: list[SeriesLoadTask[Any]] = []
        for name in ordered:
            out.extend(results.get(name, ()))
        return MergedResults(out, {**rows.failures, **failures})

    def _wrap_task(self, study_uid: str, name: str, task: SeriesLoadTask[Any]) -> SeriesLoadTask[Any]:
        metadata = {**task.metadata, TAG: name}
        series_uid = metadata.get("SeriesInstanceUID")
        if isinstance(series_uid, str):
            self._remember(series_uid, name)

        def load() -> Any:
            result = task.run()
            if isinstance(series_uid, str):
                self._tag_loaded(study_uid, name, [series_uid])
            return {**result, TAG: name} if isinstance(result, Mapping) else result

        return SeriesLoadTask(metadata, load, self._tasks_executor())

    def _eager_task(
        self,
        study_uid: str,
        name: str,
        series_uid: str,
        row: Mapping[str, Any],
        made_in_client: bool,
        kwargs: Mapping[str, Any],
    ) -> SeriesLoadTask[Any]:
        def load() -> Any:
            loaded = self.member(name).retrieve.series.metadata(
                study_uid, series_instance_uids=[series_uid], made_in_client=made_in_client, **kwargs
            )
            self._tag_loaded(study_uid, name, [series_uid])
            summary = loaded.get(series_uid) if isinstance(loaded, Mapping) else None
            return {**(summary or row), TAG: name}

        return SeriesLoadTask({**row, TAG: name}, load, self._tasks_executor())

    def direct_url(self, instance: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        name = self.route(instance=instance) if instance is not None else self.config.default_data_source_name
        assert name is not None
        member = self.member(name)
        return (
            member.retrieve.direct_url(instance, **kwargs)
            if instance is not None
            else member.retrieve.direct_url(**kwargs)
        )

    def bulk_data_uri(self, uri: Any = None, /, **kwargs: Any) -> Any:
        if uri is None:  # given by name: members call it bulk_data_uri or uri
            uri = kwargs.pop("uri", None) or kwargs.pop("bulk_data_uri", None)
        if uri is None:
            raise InvalidQueryError("retrieve.bulk_data_uri needs a BulkDataURI")
        series = kwargs.get("series_instance_uid")
        study = kwargs.get("study_instance_uid")
        if isinstance(uri, Mapping):
            series = series or uri.get("SeriesInstanceUID")
            study = study or uri.get("StudyInstanceUID")
        name = self.route(series_uid=series, study_uid=study)
        assert name is not None
        return self.member(name).retrieve.bulk_data_uri(uri, **kwargs)

    def frames(self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Any = 1) -> Any:
        name = self.route(series_uid=series_uid, study_uid=study_uid)
        assert name is not None
        member = self.member(name)
        if "frames" not in member.retrieve:
            raise NotSupportedError("retrieve.frames", name, "this member has no retrieve.frames")
        return member.retrieve.frames(study_uid, series_uid, sop_uid, frame_numbers)

    # -- image ids ---------------------------------------------------------------------------

    def get_image_ids_for_instance(self, instance: Mapping[str, Any], frame: int | None = None, **kwargs: Any) -> str:
        name = self.route(instance=instance)
        assert name is not None
        member = self.member(name)
        if frame is None:
            return member.get_image_ids_for_instance(instance, **kwargs)
        return member.get_image_ids_for_instance(instance, frame=frame, **kwargs)

    def get_image_ids_for_display_set(self, display_set: Any) -> list[str]:
        """Each instance's ids from its own member; runs of one member go to it in one call."""
        instances = imageids.instances_of(display_set)
        set_series = display_set.get("SeriesInstanceUID") if isinstance(display_set, Mapping) else None
        set_series = set_series or getattr(display_set, "SeriesInstanceUID", None)
        if not instances:
            name = self.route(series_uid=set_series, instance=display_set if isinstance(display_set, Mapping) else None)
            assert name is not None
            return self.member(name).get_image_ids_for_display_set(display_set)
        runs: list[tuple[str, list[Mapping[str, Any]]]] = []
        by_series: dict[Any, str] = {}
        for inst in instances:
            series = inst.get("SeriesInstanceUID") or set_series
            name = by_series.get(series) if inst.get(TAG) is None else None
            if name is None:
                name = self.route(series_uid=series, instance=inst)
                assert name is not None
                by_series[series] = name
            if runs and runs[-1][0] == name:
                runs[-1][1].append(inst)
            else:
                runs.append((name, [inst]))
        if len(runs) == 1:
            return self.member(runs[0][0]).get_image_ids_for_display_set(display_set)
        out: list[str] = []
        for name, run in runs:
            out.extend(self.member(name).get_image_ids_for_display_set({"images": run}))
        return out

    # -- store and reject --------------------------------------------------------------------

    def store_dicom(self, items: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self.member(self.config.default_data_source_name).store.dicom(items, *args, **kwargs)

    def reject_series(self, study_uid: str, series_uid: str, /, *args: Any, **kwargs: Any) -> Any:
        name = self.route(series_uid=series_uid, study_uid=study_uid, fallback=False)
        if name is None:
            rows = self.search_series(study_uid)  # learn where the series lives; never guess for a reject
            holders = rows.sources.get(series_uid)
            if not holders:
                failed = f"; failed members: {sorted(rows.failures)}" if rows.failures else ""
                raise NotFoundError(
                    f"series {series_uid!r} of study {study_uid!r} is in no member of {self.name!r}{failed}"
                )
            name = holders[0]
        result = self.member(name).reject.series(study_uid, series_uid, *args, **kwargs)
        with self._lock:
            self._routes.pop(series_uid, None)  # another member may still hold it: ask again next time
        return result

    # -- the rest ----------------------------------------------------------------------------

    def initialize(self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> list[str]:
        """Checks the members against the host; members start on their first use, each on its own."""
        self.validate()
        return imageids.study_uids_from_route(params, query)

    def get_study_instance_uids(
        self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None
    ) -> list[str]:
        asked = imageids.study_uids_from_route(params, query)
        if asked:
            return asked
        results, failures = self.fan_out(
            "get_study_instance_uids", lambda n, ds: ds.get_study_instance_uids(params=params, query=query)
        )
        seen: dict[str, None] = {}
        for uids in results.values():
            for uid in uids or ():
                seen.setdefault(uid, None)
        return MergedResults(seen, failures)

    def delete_study_metadata(self, study_instance_uid: str) -> None:
        self.fan_out("delete_study_metadata", lambda n, ds: ds.delete_study_metadata(study_instance_uid))

    def get_config(self) -> dict[str, Any]:
        upload = False
        try:
            default = self._host().get_data_source(self.config.default_data_source_name)
            upload = bool(default.get_config().get("dicomUploadEnabled", False))
        except Exception:  # an unknown or broken default member: upload is simply not offered
            upload = False
        return {"dicomUploadEnabled": upload, **self.config.public()}

    def close(self) -> None:
        """Stop the merge source's threads (members are closed by their own helpers)."""
        with self._lock:
            pools, self._pool, self._task_pool = (self._pool, self._task_pool), None, None
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


def create_merge_api(configuration: Mapping[str, Any], host: Any = None) -> DataSource:
    """Factory for ``default.dataSourcesModule.merge``: checks the configuration's shape, calls no member."""
    return IWebApiDataSource.from_source(MergeSource(configuration, host))
