"""Finding and loading extensions, and keeping a record of those that failed.

Extensions come from installed distributions (entry-point group
``datasources.extensions``) or are registered in-process. A broken extension never
takes the host down: an import error, a hook that raises, a malformed return value or
a duplicate namespace is recorded as a :class:`LoadFailure` with the extension's name
and version, and everything else keeps working. That includes ``sys.exit()`` and any other
``BaseException`` an extension raises at import or in a hook: only ``KeyboardInterrupt``
(the user's own Ctrl-C) goes through. With ``strict=True`` the first such
problem raises :class:`~datasources.errors.ExtensionLoadError` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import FunctionType, MethodType, ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .definitions import DataSourceDefinition, coerce_definition
from .errors import ExtensionLoadError
from .records import Record

if TYPE_CHECKING:
    from .interface import DataSource

__all__ = ["ExtensionRegistry", "LoadFailure", "RegisteredModule"]


def _log() -> Any:
    """The module's logger, made on first use: importing logging costs a start-up budget's tenth."""
    import logging

    return logging.getLogger("datasources.extensions")


def _describe(exc: BaseException) -> str:
    """``SystemExit`` says nothing by itself: name the exit code."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


# Value classes on the start path are frozen Records, neither attrs nor dataclasses: importing
# attrs costs about 8 ms, and dataclasses compile their methods at import (records.py).
class LoadFailure(Record):
    """Why an extension (or one of its definitions) could not be used."""

    _fields = ("extension", "version", "stage", "error")

    extension: str
    version: str | None
    stage: str  # "import", "register", "getDataSourcesModule", "definition", "getDataSourceHelpers"
    error: ExtensionLoadError

    def __init__(self, extension: str, version: str | None, stage: str, error: ExtensionLoadError) -> None:
        self._set(extension=extension, version=version, stage=stage, error=error)

    @property
    def message(self) -> str:
        return self.error.reason


class RegisteredModule(Record):
    """A data-source definition as registered under its namespace."""

    _fields = ("namespace", "definition", "extension", "version")

    namespace: str
    definition: DataSourceDefinition
    extension: str
    version: str | None

    def __init__(self, namespace: str, definition: DataSourceDefinition, extension: str, version: str | None) -> None:
        self._set(namespace=namespace, definition=definition, extension=extension, version=version)


class ExtensionInfo(Record):
    """An extension as registered: where it came from and the namespaces it provides."""

    _fields = ("name", "version", "source", "namespaces")

    name: str
    version: str | None
    source: str  # "entry point" or "in-process"
    namespaces: tuple[str, ...]

    def __init__(self, name: str, version: str | None, source: str, namespaces: tuple[str, ...]) -> None:
        self._set(name=name, version=version, source=source, namespaces=namespaces)


_HOOKABLE = (FunctionType, MethodType, staticmethod, classmethod)


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, with a quick answer for a module's attributes that cannot be hooks.

    pluggy looks every name in ``dir(plugin)`` up with ``inspect.getattr_static``, about half
    of what registering an extension module costs. For a plain module that look-up returns
    the value in its ``__dict__`` (or a descriptor of ``ModuleType``, never a function), so a
    value that is no function, method, staticmethod or classmethod is no hook implementation;
    everything else goes to pluggy as before.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        if type(plugin) is ModuleType and not isinstance(plugin.__dict__.get(name), _HOOKABLE):
            return None
        return super().parse_hookimpl_opts(plugin, name)


class ExtensionRegistry:
    """The pluggy plugin manager plus the data-source modules the extensions provide."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.plugin_manager: pluggy.PluginManager = _PluginManager(hookspecs.PROJECT_NAME)
        self.plugin_manager.add_hookspecs(hookspecs)
        self.modules: dict[str, RegisteredModule] = {}
        self.failures: list[LoadFailure] = []
        self._extensions: dict[str, ExtensionInfo] = {}

    # -- discovery -------------------------------------------------------------------

    def discover(self) -> None:
        """Load every extension installed under the entry-point group."""
        from .entrypoints import entry_points

        for ep in entry_points(hookspecs.ENTRY_POINT_GROUP):
            version = ep.version
            if ep.name in self._extensions:
                self._fail(ep.name, version, "register", "an extension of this name is already registered")
                continue
            try:
                obj = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # an extension's import failure (even sys.exit) must not take the host down
                self._fail(ep.name, version, "import", f"cannot import {ep.value}: {_describe(exc)}", exc)
                continue
            self.register(obj, name=ep.name, version=version, source="entry point")

    def register(self, obj: Any, *, name: str, version: str | None = None, source: str = "in-process") -> bool:
        """Register one extension object; return whether it registered cleanly."""
        if not name or "." in name:
            raise ExtensionLoadError(str(name), "extension names must be non-empty and contain no dots")
        if name in self._extensions:
            return self._fail(name, version, "register", "an extension of this name is already registered")
        try:
            self.plugin_manager.register(obj, name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # pluggy's validation errors, duplicate objects, a module's __getattr__
            return self._fail(name, version, "register", _describe(exc), exc)
        namespaces: list[str] = []
        ok = True
        for impl in self._impls("getDataSourcesModule", obj):
            try:
                returned = impl.function()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                ok = self._fail(name, version, "getDataSourcesModule", f"hook raised {_describe(exc)}", exc)
                continue
            if not isinstance(returned, list | tuple):
                ok = self._fail(
                    name,
                    version,
                    "getDataSourcesModule",
                    f"hook must return a list of definitions, got {type(returned).__name__}",
                )
                continue
            for item in returned:
                try:
                    definition = coerce_definition(item, name, version)
                except ExtensionLoadError as exc:
                    ok = self._record(LoadFailure(name, version, "definition", exc))
                    continue
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # a definition object whose own methods raise
                    ok = self._fail(name, version, "definition", f"unreadable definition: {_describe(exc)}", exc)
                    continue
                namespace = f"{name}.{hookspecs.MODULE_TYPE}.{definition.name}"
                if namespace in self.modules:
                    ok = self._fail(name, version, "definition", f"duplicate namespace {namespace!r}")
                    continue
                self.modules[namespace] = RegisteredModule(namespace, definition, name, version)
                namespaces.append(namespace)
        self._extensions[name] = ExtensionInfo(name, version, source, tuple(namespaces))
        return ok

    # -- queries ---------------------------------------------------------------------

    @property
    def extensions(self) -> list[ExtensionInfo]:
        return [self._extensions[n] for n in sorted(self._extensions)]

    def failures_for(self, extension: str) -> list[LoadFailure]:
        return [f for f in self.failures if f.extension == extension]

    def get_module(self, namespace: str) -> RegisteredModule | None:
        return self.modules.get(namespace)

    def collect_helpers(self, source_name: str, namespace: str, data_source: DataSource) -> None:
        """Ask every extension for helpers for this source and attach them."""
        for impl in self._impls("getDataSourceHelpers"):
            ext = impl.plugin_name
            version = self._extensions[ext].version if ext in self._extensions else None
            try:
                helpers = impl.function(source_name=source_name, namespace=namespace, data_source=data_source)
                if helpers is None:
                    continue
                if not isinstance(helpers, Mapping):
                    raise TypeError(f"must return a mapping of name to callable, got {type(helpers).__name__}")
                for helper_name, func in helpers.items():
                    data_source.add_helper(helper_name, func)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                self._fail(ext, version, "getDataSourceHelpers", f"helpers for {source_name!r}: {_describe(exc)}", exc)

    # -- internals -------------------------------------------------------------------

    def _impls(self, hook_name: str, plugin: Any = None) -> list[pluggy.HookImpl]:
        caller = getattr(self.plugin_manager.hook, hook_name)
        impls = caller.get_hookimpls()
        if plugin is not None:
            impls = [i for i in impls if i.plugin is plugin]
        return impls

    def _fail(
        self, extension: str, version: str | None, stage: str, message: str, cause: BaseException | None = None
    ) -> bool:
        error = ExtensionLoadError(extension, message, version=version)
        if cause is not None:
            error.__cause__ = cause
        return self._record(LoadFailure(extension, version, stage, error))

    def _record(self, failure: LoadFailure) -> bool:
        if self.strict:
            raise failure.error
        _log().warning("%s", failure.error)
        self.failures.append(failure)
        return False
