"""One way to write a source: a class whose methods have the interface's names.

:class:`Source` is the base class (fsspec's ``AbstractFileSystem`` is the model): it holds
the shared defaults — study UIDs from the route parameters (else the ones the source
holds), ``delete_study_metadata`` through the host's store, image ids from the instances,
and ``NotSupportedError`` for every operation a subclass does not override. :meth:`IWebApiDataSource.from_source`
turns any such object (a subclass, or any object with some of these method names) into
the :class:`~datasources.interface.DataSource` the host routes calls to.

A source that only lists studies from a JSON file, in one screen::

    class Studies(Source):
        def search_studies(self, query=None, **filters):
            return [...]

    def create(configuration, host):
        return IWebApiDataSource.from_source(Studies(configuration, host))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import NotSupportedError
from .imageids import image_ids_for_display_set, study_uids_from_route

__all__ = ["METHODS", "Source", "build_members"]

#: Method name on a source object → the interface member it provides.
METHODS: Mapping[str, str] = {
    "initialize": "initialize",
    "search_studies": "query.studies.search",
    "search_series": "query.series.search",
    "search_instances": "query.instances.search",
    "series_metadata": "retrieve.series.metadata",
    "series_metadata_json": "retrieve.series.metadata_json",
    "frames": "retrieve.frames",
    "frames_async": "retrieve.frames_async",
    "direct_url": "retrieve.direct_url",
    "bulk_data_uri": "retrieve.bulk_data_uri",
    "store_dicom": "store.dicom",
    "reject_series": "reject.series",
    "get_image_ids_for_display_set": "get_image_ids_for_display_set",
    "get_image_ids_for_instance": "get_image_ids_for_instance",
    "get_config": "get_config",
    "get_study_instance_uids": "get_study_instance_uids",
    "delete_study_metadata": "delete_study_metadata",
}

#: Members a source may leave out: each raises ``NotSupportedError`` when called.
_OPTIONAL = frozenset(
    {
        "query.studies.search",
        "query.series.search",
        "query.instances.search",
        "retrieve.series.metadata",
        "retrieve.series.metadata_json",
        "retrieve.frames",
        "retrieve.frames_async",
        "retrieve.direct_url",
        "retrieve.bulk_data_uri",
        "store.dicom",
        "reject.series",
    }
)


class Source:
    """Base class with the interface's defaults; override what the backend can do.

    Subclasses set ``self.host`` (the host, or None) and usually ``self.name``; the
    ``HELPERS`` tuple names methods published as ``data_source.helpers.NAME``.
    """

    #: Names of methods (or attributes holding callables) exposed as helpers.
    HELPERS: tuple[str, ...] = ()
    #: Reasons shown by ``NotSupportedError`` for operations this source leaves out.
    READ_ONLY_REASON: str | None = None
    #: Number of a multi-frame instance's first frame in its image ids (wadors: 1, wadouri/dicomfile: 0).
    FIRST_FRAME: int = 1

    host: Any = None
    #: The DataSource ``from_source`` built from this object; its ``name`` is the one the host gave it.
    data_source: Any = None

    def __init__(self, configuration: Mapping[str, Any] | None = None, host: Any = None) -> None:
        self.configuration = dict(configuration or {})
        self.host = host

    # --- shared defaults -------------------------------------------------------------
    def initialize(self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> list[str]:
        """Prepare the backend; returns the study UIDs the route asked for (may be empty)."""
        uids = getattr(self, "get_study_instance_uids", None)
        return uids(params, query) if uids is not None else study_uids_from_route(params, query)

    def get_study_instance_uids(
        self, params: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None
    ) -> list[str]:
        """The study UIDs named by the route (``?StudyInstanceUIDs=a,b``); when it names none,
        every study the source holds (:meth:`held_study_uids`, empty unless overridden)."""
        asked = study_uids_from_route(params, query)
        if asked:
            return asked
        held = getattr(self, "held_study_uids", None)
        return list(held()) if held is not None else []

    def held_study_uids(self) -> list[str]:
        """Every study this source holds, for a route that names none; a source that cannot
        list them cheaply (a DICOMweb server) keeps this default: none."""
        return []

    def delete_study_metadata(self, study_instance_uid: str) -> None:
        """Forget a study's metadata: removed from the host's store."""
        host = getattr(self, "host", None)
        if host is not None:
            host.metadata_store.remove_study(study_instance_uid)

    def get_image_ids_for_instance(self, instance: Mapping[str, Any], frame: int | None = None) -> str:
        """An instance's image id: the one it was stored with (``imageId``), frame appended."""
        image_id = instance.get("imageId") if isinstance(instance, Mapping) else None
        if not image_id:
            raise NotSupportedError("get_image_ids_for_instance", reason="the instance carries no imageId")
        return str(image_id) if frame is None else f"{image_id}?frame={frame}"

    def get_image_ids_for_display_set(self, display_set: Any) -> list[str]:
        """One image id per instance (or per frame of a multi-frame instance) of a display set."""
        image_id = getattr(self, "get_image_ids_for_instance", None) or Source.get_image_ids_for_instance.__get__(self)
        return image_ids_for_display_set(display_set, image_id, first_frame=getattr(self, "FIRST_FRAME", 1))

    def get_config(self) -> dict[str, Any]:
        """The configuration, as given (subclasses with secrets return a redacted copy)."""
        return dict(getattr(self, "configuration", None) or {})

    def helpers(self) -> dict[str, Callable[..., Any]]:
        """The helpers this source publishes (``HELPERS`` by default)."""
        return {name: getattr(self, name) for name in self.HELPERS}


def _unsupported(member: str, reason: str | None) -> Callable[..., Any]:
    from .interface import not_supported

    return not_supported(member, reason)


def build_members(obj: Any) -> dict[str, Any]:
    """The nested member tree of ``obj`` for ``IWebApiDataSource.create``, defaults filled."""
    reason = getattr(obj, "READ_ONLY_REASON", None)
    flat: dict[str, Any] = {}
    for method, member in METHODS.items():
        func = getattr(obj, method, None)
        if func is None and not isinstance(obj, Source):  # a plain object: Source's defaults, bound to it
            fallback = getattr(Source, method, None)
            if fallback is not None:
                func = fallback.__get__(obj)
        if func is None:
            if member not in _OPTIONAL:
                continue  # create() reports it as missing
            if member in ("retrieve.frames", "retrieve.frames_async", "retrieve.series.metadata_json"):
                continue  # optional beyond OHIF's interface: the gateway cuts PixelData, uses a thread, or the store
            func = _unsupported(member, reason if member in ("store.dicom", "reject.series") else None)
        flat[member] = func
    tree: dict[str, Any] = {}
    for member, func in flat.items():
        node = tree
        *path, leaf = member.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = func
    return tree
