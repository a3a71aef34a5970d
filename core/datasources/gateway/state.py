"""The gateway's state: which sources are served, how a request finds its source and URLs, and the metadata cache.

Metadata flows as everywhere else: ``retrieve.series.metadata`` fills the host's metadata
store, and WADO-RS metadata is read back from the store and denaturalized (a cold load from a
source with ``retrieve.series.metadata_json`` is answered from the backend's JSON and the store
filled after it: :mod:`.backend_answer`). The gateway
remembers which source filled which study and when, so a study is fetched again after
``metadata_ttl`` seconds, after a STOW into it, or when another source asks for the same
UID (the store is keyed by UID, one per host). Route handlers reach the :class:`Gateway`
through ``request.app.state.gateway`` (see :func:`source_context`), never through the app module.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import ConfigurationError, DataSourcesError, NotFoundError, UnknownDataSourceError
from ..gcpause import release_later
from .backend_answer import AnswerFromBackend, _caller, _Loaded
from .observe import note

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..host import Host
    from ..interface import DataSource
    from .redis_cache import RedisCache

__all__ = ["Gateway", "gateway_of", "source_context", "source_of"]

log = logging.getLogger("datasources.gateway")

_MAX_BODIES = 8  # metadata answers kept per loaded study (its series, and the URLs clients reach us by)


class _KeyLock:
    """One study's lock. Used as ``with gateway._lock_for(uid):`` so the ``with`` holds the object
    itself: the registry keeps only weak references, and a lock nobody holds may be collected."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()

    def __enter__(self) -> _KeyLock:
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class Gateway(AnswerFromBackend):
    """Which sources are served, and the study metadata they filled into the host's store."""

    def __init__(
        self,
        host: Host,
        *,
        sources: Sequence[str] | None = None,
        default_source: str | None = None,
        metadata_ttl: float = 30.0,
        max_cached_studies: int = 200,
        max_stow_bytes: int = 1 << 30,
        max_stow_parts: int = 10_000,
        stow_spool_bytes: int = 16 << 20,
        public_url: str | None = None,
        shared_cache: RedisCache | None = None,
    ) -> None:
        self.host = host
        self.shared_cache = shared_cache if shared_cache is not None and shared_cache.enabled else None
        names = list(dict.fromkeys(sources)) if sources else list(host.source_names)
        known = set(host.source_names)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigurationError(
                f"gateway: no data source named {', '.join(map(repr, unknown))}; configured: "
                f"{', '.join(map(repr, host.source_names)) or 'none'}"
            )
        bad = [n for n in names if not n or "/" in n]
        if bad:
            raise ConfigurationError(f"gateway: source names {bad!r} cannot be URL path segments")
        if not names:
            raise ConfigurationError("gateway: there is no data source to serve")
        if default_source is None:
            active = host.active_data_source_name
            default_source = active if active in names else names[0]
        elif default_source not in names:
            raise ConfigurationError(f"gateway: the default source {default_source!r} is not served")
        if metadata_ttl < 0 or max_cached_studies < 1 or max_stow_bytes < 1 or max_stow_parts < 1:
            raise ConfigurationError(
                "gateway: metadata_ttl >= 0, max_cached_studies >= 1, max_stow_bytes >= 1, max_stow_parts >= 1"
            )
        if stow_spool_bytes < 0:
            raise ConfigurationError("gateway: stow_spool_bytes >= 0")
        self.sources: tuple[str, ...] = tuple(names)
        self.default_source = default_source
        self.metadata_ttl = float(metadata_ttl)
        self.max_cached_studies = int(max_cached_studies)
        self.max_stow_bytes = int(max_stow_bytes)
        self.max_stow_parts = int(max_stow_parts)
        self.stow_spool_bytes = int(stow_spool_bytes)
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"gateway: public_url must be an http(s) URL, not {public_url!r}")
        self.public_url = public_url.rstrip("/") if public_url else None
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._refused: OrderedDict[str, None] = OrderedDict()  # backend JSON the store refused: no passthrough
        self._locks: weakref.WeakValueDictionary[str, _KeyLock] = weakref.WeakValueDictionary()
        self._state = threading.Lock()

    def __repr__(self) -> str:
        return f"<Gateway sources={list(self.sources)!r} default={self.default_source!r}>"

    def base_url(self, request: Request) -> str:
        """The gateway's own URL, for the RetrieveURLs and BulkDataURIs it hands out.

        ``public_url`` when configured (behind a reverse proxy). Otherwise the request's Host
        header, with the port the connection came in on when the header has none and that
        port is not the scheme's default: dicomweb-client sends ``Host: 127.0.0.1`` without
        the port, and a URL built from that points at port 80.
        """
        if self.public_url:
            return self.public_url
        url = request.base_url
        server = request.scope.get("server")
        if url.port is None and server and server[1] not in (None, {"http": 80, "https": 443}.get(url.scheme)):
            url = url.replace(port=server[1])
        return str(url).rstrip("/")

    # -- sources ---------------------------------------------------------------------------

    def data_source(self, name: str | None) -> tuple[str, DataSource]:
        """``(name, source)`` for a request; the default source when ``name`` is None."""
        chosen = self.default_source if name is None else name
        if chosen not in self.sources:
            raise UnknownDataSourceError(chosen, self.sources)
        return chosen, self.host.get_data_source(chosen)

    # -- metadata through the store --------------------------------------------------------

    def _lock_for(self, study: str) -> _KeyLock:
        with self._state:
            lock = self._locks.get(study)
            if lock is None:
                lock = _KeyLock()
                self._locks[study] = lock
            return lock

    def _settled(self, study: str) -> _Loaded | None:
        """The study's load, once the store fill after an answer made from the backend's JSON is done."""
        while True:
            with self._state:
                entry = self._loaded.get(study)
            if entry is None or entry.filling is None or entry.filling.is_set():
                return entry
            entry.filling.wait()

    def _drop(self, study: str, entry: _Loaded | None, fallback: DataSource | None = None) -> None:
        """Forget a study: the source's own cache of it and the store's copy."""
        if entry is not None and entry.filling is not None:
            entry.filling.wait()  # not while its fill may still add to the store
        owner = fallback
        if entry is not None:
            try:
                owner = self.host.get_data_source(entry.source)
            except DataSourcesError:
                owner = fallback
        if owner is not None:
            try:
                owner.delete_study_metadata(study)
            except DataSourcesError as exc:
                log.warning("gateway: forgetting study %s: %s", study, exc)
        store = self.host.metadata_store
        record = store.get_study(study)
        store.remove_study(study)
        if record is not None:
            release_later(record)  # freed while this request waits on the backend, not before it asks
            del record
        with self._state:
            if self._loaded.get(study) is entry:
                self._loaded.pop(study, None)

    def _fresh(self, entry: _Loaded | None, name: str, now: float, caller: str | None) -> bool:
        """Whether ``entry`` is this source's load, within the TTL, made with ``caller``'s credentials."""
        return (
            entry is not None
            and entry.source == name
            and now - entry.at <= self.metadata_ttl
            and entry.caller == caller
        )

    def _ensure(self, name: str, data_source: DataSource, study: str, series: str | None) -> None:
        store = self.host.metadata_store
        now = time.monotonic()
        entry = self._settled(study)
        caller = _caller()
        fresh = self._fresh(entry, name, now, caller)
        if fresh and entry is not None and (entry.series is None or (series is not None and series in entry.series)):
            with self._state:
                if study in self._loaded:
                    self._loaded.move_to_end(study)
            return
        if entry is not None and not fresh:
            self._drop(study, entry)
            entry = None
        elif entry is None and store.get_study(study) is not None:
            self._drop(study, None, data_source)  # filled elsewhere: start from this source's own view
        data_source.retrieve.series.metadata(study, series_instance_uids=[series] if series else None)
        if series is None:
            loaded = _Loaded(name, now, None, caller=caller)
        elif entry is not None and entry.series is not None:
            loaded = _Loaded(name, entry.at, entry.series | {series}, caller=caller)
        else:
            loaded = _Loaded(name, now, frozenset({series}), caller=caller)
        with self._state:
            self._refused.pop(study, None)
        self._register(study, loaded)

    def _register(self, study: str, loaded: _Loaded) -> None:
        """Record a load; the least recently used studies beyond ``max_cached_studies`` are forgotten."""
        with self._state:
            self._loaded[study] = loaded
            self._loaded.move_to_end(study)
            excess = len(self._loaded) - self.max_cached_studies
            victims = [(k, v) for k, v in list(self._loaded.items())[: max(0, excess)] if k != study]
        for key, old in victims:
            lock = self._lock_for(key)
            if lock.lock.acquire(blocking=False):  # never wait for another study's lock while holding one
                try:
                    self._drop(key, old)
                finally:
                    lock.lock.release()

    def metadata_answer(
        self,
        name: str,
        data_source: DataSource,
        study: str,
        series: str | None,
        root: str,
        render: Callable[[list[dict[str, Any]]], bytes],
    ) -> tuple[bytes, Callable[[], None] | None]:
        """The WADO-RS metadata of a study (or one series) as JSON bytes, made once per load.

        Denaturalizing a 1000-instance study costs about 150 ms; while the study's metadata
        is fresh, the same answer is served again from memory, or from the shared cache when
        another worker made it. A load from a source with ``retrieve.series.metadata_json`` is
        answered from the backend's own JSON and the store filled after: the second value is
        then the callable to call once the answer has left (the fill waits for it, at most
        ``SEND_WAIT`` seconds); every other request for the study waits for the fill.
        """
        shared = self.shared_cache
        if shared is not None:
            cached = shared.get_metadata(name, study, series, root)
            if cached is not None:
                note(cache="redis")
                return cached, None
        with self._lock_for(study):
            answered = self._backend_answer(name, data_source, study, series, root)
            if answered is not None:
                note(cache="miss")
                if shared is not None:
                    shared.put_metadata(name, study, series, root, answered[0])
                return answered
            if series is None:
                instances = self.study_instances(name, data_source, study)
            else:
                instances = self.series_instances(name, data_source, study, series)
            with self._state:
                entry = self._loaded.get(study)
            key = (series, root)
            if entry is not None and key in entry.bodies:
                note(cache="memory")
                return entry.bodies[key], None
            body = render(instances)
            note(cache="miss")
            if shared is not None:
                shared.put_metadata(name, study, series, root, body)
            if entry is not None and entry.source == name:
                if len(entry.bodies) >= _MAX_BODIES:  # each Host header makes its own URLs: keep a few
                    entry.bodies.pop(next(iter(entry.bodies)))
                entry.bodies[key] = body
            return body, None

    def study_instances(self, name: str, data_source: DataSource, study: str) -> list[dict[str, Any]]:
        """Every instance of a study, as the store holds it (loaded first if need be)."""
        with self._lock_for(study):
            self._ensure(name, data_source, study, None)
            record = self.host.metadata_store.get_study(study)
            if record is None:
                raise NotFoundError(f"study {study!r} is not in data source {name!r}")
            return [inst for series in record.get("series", ()) for inst in series.get("instances", ())]

    def series_instances(self, name: str, data_source: DataSource, study: str, series: str) -> list[dict[str, Any]]:
        with self._lock_for(study):
            self._ensure(name, data_source, study, series)
            record = self.host.metadata_store.get_series(study, series)
            if record is None:
                raise NotFoundError(f"series {series!r} of study {study!r} is not in data source {name!r}")
            return list(record.get("instances", ()))

    def instance(self, name: str, data_source: DataSource, study: str, series: str, sop: str) -> dict[str, Any]:
        for candidate in self.series_instances(name, data_source, study, series):
            if candidate.get("SOPInstanceUID") == sop:
                return candidate
        raise NotFoundError(f"instance {sop!r} is not in series {series!r} of data source {name!r}")

    def cached_instance(self, name: str, study: str, series: str, sop: str) -> dict[str, Any] | None:
        """An instance already in the store for this source (no loading), or None."""
        with self._state:
            entry = self._loaded.get(study)
        if entry is None or entry.source != name or time.monotonic() - entry.at > self.metadata_ttl:
            return None
        if entry.caller != _caller():
            return None
        return self.host.metadata_store.get_instance(study, series, sop)

    def forget(self, name: str, data_source: DataSource, studies: Iterable[str]) -> None:
        """After a STOW: the next metadata request for these studies fetches them again."""
        for study in set(studies):
            if self.shared_cache is not None:
                self.shared_cache.forget_study(name, study)
            with self._lock_for(study):
                entry = self._settled(study)
                if entry is not None:
                    self._drop(study, entry)
                else:
                    try:
                        data_source.delete_study_metadata(study)
                    except DataSourcesError as exc:
                        log.warning("gateway: forgetting study %s: %s", study, exc)


def gateway_of(request: Request) -> Gateway:
    """The :class:`Gateway` the application serving ``request`` was made with."""
    return request.app.state.gateway  # type: ignore[no-any-return]


def source_of(request: Request) -> tuple[Gateway, str, DataSource]:
    """The gateway and the source a request is for (its name and DataSource)."""
    gateway = gateway_of(request)
    name, data_source = gateway.data_source(request.path_params.get("source"))
    return gateway, name, data_source


def source_context(request: Request) -> tuple[Gateway, str, DataSource, str]:
    """The gateway, the source a request is for (its name and DataSource), and the URL of its DICOMweb root."""
    gateway = gateway_of(request)
    given = request.path_params.get("source")
    name, data_source = gateway.data_source(given)
    base = gateway.base_url(request)
    root = f"{base}/dicom-web" if given is None else f"{base}/{quote(name, safe='')}/dicom-web"
    return gateway, name, data_source, root
