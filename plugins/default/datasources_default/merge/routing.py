"""Routing: which member serves a series, and the calls sent to that member only.

The merge source remembers the member each series came from (``route``: the routes learnt,
then a ``RetrieveAETitle`` tag, then the only member holding the study, else the default
member); retrieve, bulk data, frames, image ids and reject go to it, ``store.dicom`` to
``defaultDataSourceName``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from datasources.errors import InvalidQueryError, NotFoundError, NotSupportedError

from .. import imageids
from .config import MergeConfig

__all__ = ["MAX_ROUTES", "TAG", "Routing", "first_value"]

#: The attribute each series is tagged with: the name of the member it came from (OHIF's choice).
TAG = "RetrieveAETitle"


def first_value(value: Any) -> Any:
    """RetrieveAETitle is multi-valued: ``["member"]`` (an OHIF-style string is taken too)."""
    return value[0] if isinstance(value, list) and value else value


#: How many series -> member routes are remembered (oldest forgotten first).
MAX_ROUTES = 200_000


class Routing:
    """The merge source's routes and routed calls (a mixin of :class:`~.source.MergeSource`)."""

    # state and members: MergeSource's
    config: MergeConfig
    host: Any
    _lock: threading.Lock
    _routes: dict[str, str]  # SeriesInstanceUID -> member, oldest first
    _study_members: dict[str, tuple[str, ...]]  # StudyInstanceUID -> members holding it

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
            tagged = first_value(instance.get(TAG))
            if isinstance(tagged, str) and tagged in names:
                return tagged
        if isinstance(series_uid, str) and series_uid and self.host is not None:
            series = self.host.metadata_store.get_series(study_uid, series_uid)
            tagged = first_value(series.get(TAG)) if series is not None else None
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
            store.update_series_metadata({"StudyInstanceUID": study_uid, "SeriesInstanceUID": uid, TAG: [name]})

    # -- routed calls ------------------------------------------------------------------------

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

    async def frames_async(self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Any = 1) -> Any:
        """The member's ``retrieve.frames_async`` on the caller's event loop (the gateway's: no thread
        per frame); None when the member has none, so that :meth:`frames` is called in a thread."""
        name = self.route(series_uid=series_uid, study_uid=study_uid)  # in memory only: fine on the loop
        assert name is not None
        member = self.member(name)
        if "frames_async" not in member.retrieve:
            return None
        return await member.retrieve.frames_async(study_uid, series_uid, sop_uid, frame_numbers)

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
