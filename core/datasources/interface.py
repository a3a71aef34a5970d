"""The data-source interface: ``IWebApiDataSource.create`` and the object it returns.

OHIF's ``create`` is a shape normaliser that validates nothing and drops unknown keys.
Ours checks that every member of the interface is present and callable, raising
:class:`~datasources.errors.InterfaceError` naming what is missing, and keeps extra
members as *helpers* (``data_source.helpers.NAME``) instead of dropping them.

An operation a backend cannot do is given as :func:`not_supported`, which raises
:class:`~datasources.errors.NotSupportedError`; a member that should return a value
and returns ``None`` raises :class:`~datasources.errors.InterfaceError` rather than
passing a silent ``None`` on.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .errors import HelperNotFoundError, InterfaceError, NotSupportedError

__all__ = ["MEMBERS", "DataSource", "Helpers", "IWebApiDataSource", "Namespace", "not_supported"]

#: Every member of the interface, as dotted paths.
MEMBERS: tuple[str, ...] = (
    "initialize",
    "query.studies.search",
    "query.series.search",
    "query.instances.search",
    "retrieve.series.metadata",
    "retrieve.direct_url",
    "retrieve.bulk_data_uri",
    "store.dicom",
    "reject.series",
    "get_image_ids_for_display_set",
    "get_image_ids_for_instance",
    "get_config",
    "get_study_instance_uids",
    "delete_study_metadata",
)

#: Members that must hand back a value; ``None`` from them is an implementation bug.
_MUST_RETURN = frozenset(
    {
        "query.studies.search",
        "query.series.search",
        "query.instances.search",
        "retrieve.series.metadata",
        "retrieve.direct_url",
        "retrieve.bulk_data_uri",
        "get_image_ids_for_display_set",
        "get_image_ids_for_instance",
        "get_config",
        "get_study_instance_uids",
    }
)

#: Members that run without triggering the host's lazy ``initialize``.
_NO_INIT = frozenset({"initialize", "get_config"})

#: OHIF's camelCase names, accepted by ``create`` so an OHIF implementation object ports as written.
OHIF_ALIASES: Mapping[str, str] = {
    "getImageIdsForDisplaySet": "get_image_ids_for_display_set",
    "getImageIdsForInstance": "get_image_ids_for_instance",
    "getConfig": "get_config",
    "getStudyInstanceUIDs": "get_study_instance_uids",
    "deleteStudyMetadataPromise": "delete_study_metadata",
    "directURL": "direct_url",
    "bulkDataURI": "bulk_data_uri",
}

_NAMESPACES = ("query", "retrieve", "store", "reject")
_TOP_LEVEL = tuple(m for m in MEMBERS if "." not in m)


def not_supported(operation: str, reason: str | None = None) -> Callable[..., Any]:
    """A member for an operation the backend cannot do: calling it raises ``NotSupportedError``."""

    def unsupported(*args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError(operation, reason=reason)

    unsupported.__name__ = operation.replace(".", "_")
    unsupported.__qualname__ = unsupported.__name__
    unsupported.__doc__ = f"Not supported: {operation}."
    unsupported.not_supported = True  # type: ignore[attr-defined]  # known before a call (a gateway refuses early)
    unsupported.not_supported_reason = reason  # type: ignore[attr-defined]
    return unsupported


class Namespace:
    """Attribute access over a tree of members (``ds.query.studies.search``)."""

    __slots__ = ("_members", "_path")

    def __init__(self, path: str, members: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_members", dict(members))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._members[name]
        except KeyError:
            raise AttributeError(
                f"{self._path}.{name} does not exist; {self._path} has: {', '.join(sorted(self._members)) or 'nothing'}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._path} is read-only")

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __dir__(self) -> list[str]:
        return sorted(self._members)

    def __repr__(self) -> str:
        return f"<{self._path}: {', '.join(sorted(self._members))}>"


class Helpers:
    """A data source's helper methods, contributed by its factory or by other extensions."""

    __slots__ = ("_helpers", "_owner")

    def __init__(self, owner: DataSource) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_helpers", {})

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            return self._helpers[name]
        except KeyError:
            raise HelperNotFoundError(name, self._helpers, self._owner.name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("helpers are added with data_source.add_helper(name, function)")

    def __contains__(self, name: object) -> bool:
        return name in self._helpers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._helpers))

    def __len__(self) -> int:
        return len(self._helpers)

    def __dir__(self) -> list[str]:
        return sorted(self._helpers)

    def __repr__(self) -> str:
        return f"<helpers of {self._owner.name or 'data source'}: {', '.join(sorted(self._helpers)) or 'none'}>"


class DataSource:
    """A data source built by :meth:`IWebApiDataSource.create`.

    Members are reached as attributes, OHIF's namespaced ones included
    (``ds.query.studies.search(PatientName="DOE*")``). The host sets ``name`` and a
    guard that runs the source's ``initialize`` lazily before its first use.
    """

    query: Namespace
    retrieve: Namespace
    store: Namespace
    reject: Namespace
    initialize: Callable[..., Any]
    get_image_ids_for_display_set: Callable[..., list[str]]
    get_image_ids_for_instance: Callable[..., str]
    get_config: Callable[[], dict[str, Any]]
    get_study_instance_uids: Callable[..., list[str]]
    delete_study_metadata: Callable[[str], Any]

    def __init__(self, members: Mapping[str, Any], helpers: Mapping[str, Callable[..., Any]]) -> None:
        self.name: str | None = None
        self.namespace: str | None = None
        self._guard: Callable[[str], None] | None = None
        self.helpers = Helpers(self)
        for key in _TOP_LEVEL:
            setattr(self, key, self._wrap(key, members[key]))
        for ns in _NAMESPACES:
            setattr(self, ns, self._wrap_tree(ns, members[ns]))
        for name, func in helpers.items():
            self.add_helper(name, func)

    def add_helper(self, name: str, function: Callable[..., Any]) -> None:
        """Attach a helper reachable as ``self.helpers.NAME``; names are unique."""
        if not name.isidentifier():
            raise InterfaceError(f"helper name {name!r} is not a Python identifier")
        if not callable(function):
            raise InterfaceError(f"helper {name!r} is not callable")
        if name in self.helpers._helpers:
            raise InterfaceError(f"helper {name!r} is already defined on data source {self.name!r}")
        self.helpers._helpers[name] = self._wrap(f"helpers.{name}", function, must_return=False)

    def _wrap_tree(self, path: str, tree: Mapping[str, Any]) -> Namespace:
        members = {}
        for key, value in tree.items():
            sub = f"{path}.{key}"
            members[key] = self._wrap_tree(sub, value) if isinstance(value, Mapping) else self._wrap(sub, value)
        return Namespace(path, members)

    def _wrap(self, path: str, func: Callable[..., Any], must_return: bool | None = None) -> Callable[..., Any]:
        needs_value = path in _MUST_RETURN if must_return is None else must_return
        guarded = path not in _NO_INIT
        owner = self

        if inspect.iscoroutinefunction(func):
            return self._wrap_async(path, func, guarded)

        @functools.wraps(func)
        def member(*args: Any, **kwargs: Any) -> Any:
            guard = owner._guard
            if guarded and guard is not None:
                guard(path)
            try:
                result = func(*args, **kwargs)
            except NotSupportedError as exc:
                if exc.source is None and owner.name is not None:
                    raise NotSupportedError(exc.operation, owner.name, exc.reason) from None
                raise
            if needs_value and result is None:
                raise InterfaceError(f"{path} of data source {owner.name!r} returned None")
            return result

        return member

    def _wrap_async(self, path: str, func: Callable[..., Any], guarded: bool) -> Callable[..., Any]:
        """An ``async def`` member (``retrieve.frames_async``): the same guard and error naming.

        The host's lazy ``initialize`` may do I/O, so the first call runs it in a thread; once it
        passed, later calls find the source initialized (a re-created source gets new members).
        """
        owner = self
        passed = False

        @functools.wraps(func)
        async def member(*args: Any, **kwargs: Any) -> Any:
            nonlocal passed
            guard = owner._guard
            if guarded and guard is not None and not passed:
                import asyncio

                await asyncio.to_thread(guard, path)
                passed = True
            try:
                return await func(*args, **kwargs)
            except NotSupportedError as exc:
                if exc.source is None and owner.name is not None:
                    raise NotSupportedError(exc.operation, owner.name, exc.reason) from None
                raise

        return member

    def __repr__(self) -> str:
        return f"<DataSource {self.name!r} ({self.namespace or 'unregistered'})>"


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _as_tree(obj: Any, path: str) -> dict[str, Any]:
    """Turn a nested dict or an object with attributes into a nested dict, OHIF aliases applied."""
    items = dict(obj) if isinstance(obj, Mapping) else {k: getattr(obj, k) for k in dir(obj) if not k.startswith("_")}
    tree: dict[str, Any] = {}
    for key, value in items.items():
        key = OHIF_ALIASES.get(key, key)
        if callable(value) and not isinstance(value, Mapping):
            tree[key] = value
        elif value is None:
            continue
        else:
            tree[key] = _as_tree(value, f"{path}.{key}")
    return tree


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class IWebApiDataSource:
    """OHIF's factory for data-source objects, with validation."""

    @staticmethod
    def create(
        implementation: Mapping[str, Any] | None = None,
        /,
        *,
        helpers: Mapping[str, Callable[..., Any]] | None = None,
        **members: Any,
    ) -> DataSource:
        """Build a :class:`DataSource` from its members.

        Members are keyword arguments (or one mapping, as OHIF's implementation object),
        the namespaced ones as nested dicts or objects:
        ``query={"studies": {"search": fn}, "series": {...}, "instances": {...}}``.
        OHIF's camelCase names are accepted. Any member not in the interface is kept
        as a helper; so is everything in ``helpers``.
        """
        given: dict[str, Any] = {}
        if implementation is not None:
            given.update(implementation)
        given.update(members)
        given = {OHIF_ALIASES.get(k, k): v for k, v in given.items()}

        trees: dict[str, Any] = {}
        extra: dict[str, Callable[..., Any]] = dict(helpers or {})
        problems: list[str] = []
        for key, value in given.items():
            if key in _NAMESPACES:
                if value is None:
                    continue
                if callable(value) and not isinstance(value, Mapping) and not _has_members(value):
                    problems.append(f"{key} must be a namespace (a dict or object), not a function")
                    continue
                trees[key] = _as_tree(value, key)
            elif key in _TOP_LEVEL:
                if value is not None:
                    trees[key] = value
            elif callable(value):
                extra[key] = value
            else:
                problems.append(f"{key} is not an interface member and not callable, so it cannot be a helper")

        missing, not_callable = [], []
        for path in MEMBERS:
            found = _lookup(trees, path)
            if found is None:
                missing.append(path)
            elif not callable(found) or isinstance(found, Mapping):
                not_callable.append(path)
        if missing:
            problems.append("missing: " + ", ".join(missing))
        if not_callable:
            problems.append("not callable: " + ", ".join(not_callable))
        if problems:
            raise InterfaceError(
                "invalid data-source implementation; "
                + "; ".join(problems)
                + " (use datasources.not_supported(...) for operations the backend cannot do)"
            )
        for ns in _NAMESPACES:
            trees.setdefault(ns, {})
        return DataSource(trees, extra)

    @staticmethod
    def from_source(source: Any, /, *, helpers: Mapping[str, Callable[..., Any]] | None = None) -> DataSource:
        """Build a :class:`DataSource` from an object whose methods have the interface's names.

        ``search_studies`` becomes ``query.studies.search``, ``series_metadata``
        ``retrieve.series.metadata`` and so on (:data:`datasources.source.METHODS`);
        what the object lacks gets :class:`~datasources.source.Source`'s default, and an
        operation it cannot do raises ``NotSupportedError``. Helpers are the object's
        ``helpers()`` (``Source.HELPERS``) plus ``helpers``. A :class:`~datasources.source.Source`
        learns the data source built from it as ``source.data_source`` (the host names it later).
        """
        from .source import Source, build_members

        published = source.helpers() if callable(getattr(source, "helpers", None)) else {}
        ds = IWebApiDataSource.create(build_members(source), helpers={**published, **(helpers or {})})
        if isinstance(source, Source):
            source.data_source = ds
        return ds


def _has_members(value: Any) -> bool:
    return any(not k.startswith("_") for k in dir(value)) and not hasattr(value, "__code__")
