"""The host: loads extensions, reads the configuration, creates sources and routes to them.

Data flows config -> host -> source -> store. The host creates every configured source
with its extension's factory (no I/O), then calls the source's ``initialize`` lazily,
once, right before the source's first use (or when asked, with route ``params`` and
``query`` as OHIF's viewer does).
"""

from __future__ import annotations

import _thread  # threading's RLock (the same C type), without importing threading at start
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .config import AppConfig, DataSourceEntry, load_config
from .errors import (
    ConfigurationError,
    DataSourcesError,
    DataSourceUnavailableError,
    InterfaceError,
    UnknownDataSourceError,
    UnknownNamespaceError,
)
from .events import PubSub
from .extensions import ExtensionRegistry, LoadFailure
from .interface import DataSource
from .records import Record

if TYPE_CHECKING:
    from .metadata_store import DicomMetadataStore

__all__ = ["DataSourceInfo", "Host"]


def _log() -> Any:
    """The module's logger, made on first use: importing logging costs a start-up budget's tenth."""
    import logging

    return logging.getLogger("datasources.host")


ACTIVE_DATA_SOURCE_CHANGED = "event::activedatasourcechanged"


class DataSourceInfo(Record):
    """One configured data source, as listed by :attr:`Host.data_sources`."""

    _fields = ("source_name", "namespace", "friendly_name", "type", "active", "initialized", "error")

    source_name: str
    namespace: str
    friendly_name: str
    type: str | None
    active: bool
    initialized: bool
    error: str | None

    def __init__(
        self,
        source_name: str,
        namespace: str,
        friendly_name: str,
        type: str | None,
        active: bool,
        initialized: bool,
        error: str | None = None,
    ) -> None:
        self._set(
            source_name=source_name,
            namespace=namespace,
            friendly_name=friendly_name,
            type=type,
            active=active,
            initialized=initialized,
            error=error,
        )


class _Slot:
    """A configured source: its entry, the instance, and whether it is initialized."""

    __slots__ = ("data_source", "entry", "error", "init_lock", "initialized", "type")

    def __init__(self, entry: DataSourceEntry) -> None:
        self.entry = entry
        self.data_source: DataSource | None = None
        self.error: DataSourcesError | None = None
        self.initialized = False
        self.init_lock = _thread.RLock()
        self.type: str | None = None


class Host(PubSub):
    """Loads extensions and routes calls to configured data sources.

    ``Host()`` discovers installed extensions and uses the embedded default
    configuration (the bundled sample studies). ``Host.from_config(path_or_dict)``
    uses a configuration of your own.
    """

    EVENTS = PubSub.make_events(ACTIVE_DATA_SOURCE_CHANGED=ACTIVE_DATA_SOURCE_CHANGED)

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any] | AppConfig | None = None,
        *,
        discover: bool = True,
        strict: bool = False,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.strict = strict
        self.registry = ExtensionRegistry(strict=strict)
        self._lock = _thread.RLock()
        self._slots: dict[str, _Slot] = {}
        self._store: DicomMetadataStore | None = None
        if discover:
            self.registry.discover()
        for name, obj in (extensions or {}).items():
            self.registry.register(obj, name=name)
        self._config = load_config(config)
        self.default_data_source_name: str | None = self._config.default_data_source_name
        self._active: str | None = self.default_data_source_name
        for entry in self._config.data_sources:
            self._create(entry)

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike[str] | Mapping[str, Any] | AppConfig | None,
        **kwargs: Any,
    ) -> Host:
        """A host over ``config``: a dict, a JSON/YAML/TOML path, or ``None`` for the embedded default."""
        return cls(config, **kwargs)

    # -- extensions ------------------------------------------------------------------

    def register_extension(self, obj: Any, *, name: str, version: str | None = None) -> None:
        """Register an extension object in-process (for applications that embed the host)."""
        self.registry.register(obj, name=name, version=version)

    @property
    def load_errors(self) -> list[LoadFailure]:
        """Every extension problem recorded so far (empty when all is well)."""
        return list(self.registry.failures)

    @property
    def namespaces(self) -> list[str]:
        return sorted(self.registry.modules)

    # -- the metadata store ----------------------------------------------------------

    @property
    def metadata_store(self) -> DicomMetadataStore:
        """The one store of study/series/instance metadata all sources of this host fill."""
        with self._lock:
            if self._store is None:
                from .metadata_store import DicomMetadataStore

                self._store = DicomMetadataStore()
            return self._store

    # -- sources ---------------------------------------------------------------------

    @property
    def data_sources(self) -> list[DataSourceInfo]:
        with self._lock:
            slots = list(self._slots.values())
        return [
            DataSourceInfo(
                source_name=s.entry.source_name,
                namespace=s.entry.namespace,
                friendly_name=s.entry.display_name,
                type=s.type,
                active=s.entry.source_name == self._active,
                initialized=s.initialized,
                error=str(s.error) if s.error else None,
            )
            for s in slots
        ]

    @property
    def source_names(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def get_data_source(self, source_name: str | None = None) -> DataSource:
        """The source configured under ``source_name`` (the active one when omitted)."""
        slot = self._slot(source_name)
        if slot.data_source is None:
            raise DataSourceUnavailableError(
                f"data source {slot.entry.source_name!r} could not be created: {slot.error}"
            )
        return slot.data_source

    def get_data_source_definition(self, source_name: str | None = None) -> DataSourceEntry:
        return self._slot(source_name).entry

    @property
    def active_data_source_name(self) -> str | None:
        return self._active

    @property
    def active_data_source(self) -> DataSource:
        """The active source (the default one until :meth:`set_active_data_source`)."""
        return self.get_data_source(None)

    def set_active_data_source(self, source_name: str) -> None:
        """Make ``source_name`` active; publishes ``ACTIVE_DATA_SOURCE_CHANGED`` with its entry."""
        slot = self._slot(source_name)
        with self._lock:
            if self._active == source_name:
                return
            self._active = source_name
        self._broadcast_event(ACTIVE_DATA_SOURCE_CHANGED, slot.entry)

    def add_data_source(self, entry: Mapping[str, Any] | DataSourceEntry, *, activate: bool = False) -> DataSource:
        """Create and register a source at run time (an OHIF-style ``dataSources`` entry)."""
        parsed = DataSourceEntry.from_dict(entry)
        with self._lock:
            if parsed.source_name in self._slots:
                raise ConfigurationError(f"a data source named {parsed.source_name!r} already exists")
            slot = self._create(parsed)
            if self._active is None:
                self._active = parsed.source_name
        if slot.data_source is None:
            raise DataSourceUnavailableError(f"data source {parsed.source_name!r} could not be created: {slot.error}")
        if activate:
            self.set_active_data_source(parsed.source_name)
        return slot.data_source

    def update_data_source_configuration(self, source_name: str, configuration: Mapping[str, Any]) -> DataSource:
        """Replace a source's configuration and re-create it (not yet initialized)."""
        old = self._slot(source_name)
        entry = old.entry.replace(configuration=dict(configuration))
        with self._lock:
            del self._slots[source_name]
            try:
                slot = self._create(entry)
            except BaseException:
                self._slots[source_name] = old
                raise
        if slot.data_source is None:
            raise DataSourceUnavailableError(f"data source {source_name!r} could not be re-created: {slot.error}")
        if self._active == source_name:
            self._broadcast_event(ACTIVE_DATA_SOURCE_CHANGED, entry)
        return slot.data_source

    def initialize_data_source(
        self,
        source_name: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run a source's ``initialize(params=..., query=...)`` now (again, if it already ran).

        A configuration's ``onConfiguration(configuration, {"params", "query"})``
        callable, as in OHIF, may return a new configuration first; the source is
        then re-created with it.
        """
        slot = self._slot(source_name)
        with slot.init_lock:
            hook = slot.entry.configuration.get("onConfiguration")
            if callable(hook):
                new_conf = hook(dict(slot.entry.configuration), {"params": params or {}, "query": query or {}})
                if not isinstance(new_conf, Mapping):
                    raise ConfigurationError(
                        f"onConfiguration of {slot.entry.source_name!r} must return a mapping, "
                        f"got {type(new_conf).__name__}"
                    )
                if new_conf is not slot.entry.configuration:
                    slot = self._recreate_in_place(slot, new_conf)
            ds = self._require(slot)
            result = ds.initialize(params=dict(params or {}), query=dict(query or {}))
            slot.initialized = True
            return result

    # -- internals -------------------------------------------------------------------

    def _slot(self, source_name: str | None) -> _Slot:
        with self._lock:
            name = self._active if source_name is None else source_name
            if name is None:
                raise UnknownDataSourceError("<active>", self._slots)
            try:
                return self._slots[name]
            except KeyError:
                raise UnknownDataSourceError(name, self._slots) from None

    def _require(self, slot: _Slot) -> DataSource:
        if slot.data_source is None:
            raise DataSourceUnavailableError(
                f"data source {slot.entry.source_name!r} could not be created: {slot.error}"
            )
        return slot.data_source

    def _recreate_in_place(self, slot: _Slot, configuration: Mapping[str, Any]) -> _Slot:
        # keep onConfiguration out of the new configuration so it runs once per initialize
        new_entry = slot.entry.replace(configuration=dict(configuration))
        ds = self._instantiate(new_entry)
        slot.entry = new_entry
        slot.data_source = ds
        self._attach(slot)
        return slot

    def _create(self, entry: DataSourceEntry) -> _Slot:
        module = self.registry.get_module(entry.namespace)
        if module is None:
            err = UnknownNamespaceError(entry.namespace, self.registry.modules)
            extension = entry.namespace.split(".", 1)[0]
            failures = self.registry.failures_for(extension)
            if failures:
                err.args = (f"{err.args[0]}; extension {extension!r} failed to load: {failures[0].message}",)
            raise err
        slot = _Slot(entry)
        slot.type = module.definition.type
        try:
            slot.data_source = self._instantiate(entry)
        except ConfigurationError:
            raise
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:  # a factory's sys.exit() must not take the host down either
            error = DataSourceUnavailableError(
                f"createDataSource of {entry.namespace} failed for {entry.source_name!r}: {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            if self.strict:
                raise error from exc
            _log().warning("%s", error)
            slot.error = error
        with self._lock:
            self._slots[entry.source_name] = slot
        if slot.data_source is not None:
            self._attach(slot)
        return slot

    def _instantiate(self, entry: DataSourceEntry) -> DataSource:
        module = self.registry.get_module(entry.namespace)
        if module is None:  # pragma: no cover - checked by _create
            raise UnknownNamespaceError(entry.namespace, self.registry.modules)
        configuration = dict(entry.configuration)
        configuration.pop("onConfiguration", None)  # the host runs it, at initialize
        ds = module.definition.create(configuration, self)
        if not isinstance(ds, DataSource):
            raise InterfaceError(
                f"createDataSource of {entry.namespace} returned {type(ds).__name__}; "
                "it must return IWebApiDataSource.create(...)"
            )
        return ds

    def _attach(self, slot: _Slot) -> None:
        ds = slot.data_source
        assert ds is not None
        ds.name = slot.entry.source_name
        ds.namespace = slot.entry.namespace
        slot.initialized = False
        ds._guard = self._make_guard(slot)
        self.registry.collect_helpers(slot.entry.source_name, slot.entry.namespace, ds)

    def _make_guard(self, slot: _Slot) -> Callable[[str], None]:
        def guard(path: str) -> None:
            if slot.initialized:
                return
            with slot.init_lock:
                if not slot.initialized:
                    self.initialize_data_source(slot.entry.source_name)

        return guard

    def __repr__(self) -> str:
        return f"<Host sources={self.source_names!r} active={self._active!r}>"
