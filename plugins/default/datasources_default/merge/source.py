"""The merge source: one data source over several configured ones, as OHIF's MergeDataSource.

Searches fan out to every member at once and are merged by UID: **the first member in
``dataSourceNames`` order that returns a UID wins** (its record is kept whole, later copies
are dropped); ``limit``/``offset`` apply to the merged list. Each series row is tagged
``RetrieveAETitle = <member name>`` (as OHIF does) and the merge source remembers which
member each series came from, so retrieve, bulk data, frames, image ids and reject go to
that member; ``store.dicom`` goes to ``defaultDataSourceName``.

A member that fails is reported, not fatal: list results are :class:`MergedResults` (a
``list``) whose ``failures`` maps member name -> exception, and a warning is logged. When
every member fails, :class:`AllMembersFailedError` names each.

The fan-out searches are in :mod:`.search`, the routes and routed calls in :mod:`.routing`;
this module holds the members, ``retrieve.series.metadata`` and the rest of the interface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from datasources import Source
from datasources.errors import (
    ConfigurationError,
    InvalidQueryError,
    NotFoundError,
    NotSupportedError,
)
from datasources.interface import DataSource, IWebApiDataSource
from datasources.results import SeriesLoadTask
from datasources.uploads import store_refusal

from .. import imageids
from .config import MergeConfig, check_members
from .results import MergedMapping, MergedResults
from .routing import TAG, Routing
from .search import FanOutSearch

__all__ = ["TAG", "MergeSource", "create_merge_api"]


class MergeSource(FanOutSearch, Routing, Source):
    """The state of one merge source: its members, the routes it learnt, its thread pools.

    Searches are :class:`~.search.FanOutSearch`'s, routed calls :class:`~.routing.Routing`'s;
    here: the members, ``retrieve.series.metadata`` (each series from the member that wins it)
    and the rest of the interface.
    """

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

    def _tasks_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._task_pool is None:
                self._task_pool = ThreadPoolExecutor(
                    self.config.max_workers, thread_name_prefix=f"merge-{self.name}-load"
                )
            return self._task_pool

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
                        merged[uid] = {**summary, TAG: [name]} if isinstance(summary, Mapping) else summary
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
        metadata = {**task.metadata, TAG: [name]}
        series_uid = metadata.get("SeriesInstanceUID")
        if isinstance(series_uid, str):
            self._remember(series_uid, name)

        def load() -> Any:
            result = task.run()
            if isinstance(series_uid, str):
                self._tag_loaded(study_uid, name, [series_uid])
            return {**result, TAG: [name]} if isinstance(result, Mapping) else result

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
            return {**(summary or row), TAG: [name]}

        return SeriesLoadTask({**row, TAG: [name]}, load, self._tasks_executor())

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
        try:  # store.dicom goes to the default member: upload is offered when that member takes it
            default = self._host().get_data_source(self.config.default_data_source_name)
            upload = store_refusal(default) is None
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
