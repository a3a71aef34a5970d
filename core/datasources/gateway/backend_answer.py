"""Study metadata answered from the backend's own JSON, the store filled once the answer has left.

A cold WADO-RS metadata request through the gateway used to cost the backend's time plus
naturalizing the answer into the store and writing it back out (~230 ms of one core for 1000
instances, ~30% on top of Orthanc's own time). With a source that offers
``retrieve.series.metadata_json`` (dicomweb), the gateway answers from the backend's JSON with
only its BulkDataURIs rewritten, and fills the store in a thread once the answer has left; every
other request for the study (frames, bulk data, another metadata request) waits for that fill.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import safe_message
from .datasets import backend_metadata_json

if TYPE_CHECKING:
    from ..host import Host
    from ..interface import DataSource
    from ..results import SeriesMetadataJson

__all__ = ["SEND_WAIT", "AnswerFromBackend"]

log = logging.getLogger("datasources.gateway")

SEND_WAIT = 10.0  # seconds a store fill waits for its answer to leave (a response never sent: fill anyway)


def _caller() -> str | None:
    """Whose credentials a source call runs with: a digest of the forwarded Authorization, or None."""
    from ..forwarding import current_authorization

    value = current_authorization()
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else None


@dataclass
class _Loaded:
    source: str
    at: float
    series: frozenset[str] | None  # None: the whole study
    caller: str | None = None  # whose forwarded credentials loaded it: another caller loads it again
    # WADO-RS metadata bodies already made from this load: (series or None, gateway root) -> JSON
    bodies: dict[tuple[str | None, str], bytes] = field(default_factory=dict)
    # answered from the backend's own JSON: set once the store holds it (until then, wait for it)
    filling: threading.Event | None = None


class AnswerFromBackend:
    """``_backend_answer`` and its fill (a mixin of :class:`~.state.Gateway`, whose state it uses)."""

    host: Host
    max_cached_studies: int
    _loaded: OrderedDict[str, _Loaded]
    _refused: OrderedDict[str, None]
    _state: threading.Lock
    _settled: Callable[[str], _Loaded | None]
    _fresh: Callable[[_Loaded | None, str, float, str | None], bool]
    _drop: Callable[..., None]
    _register: Callable[[str, _Loaded], None]

    def _backend_answer(
        self, name: str, data_source: DataSource, study: str, series: str | None, root: str
    ) -> tuple[bytes, Callable[[], None]] | None:
        """A load answered from the backend's JSON, or None where the store path is taken.

        Only where the load would start from nothing (no fresh load of the study by this source)
        and the source offers ``retrieve.series.metadata_json``; a study whose backend JSON the
        store refused before takes the store path, which raises the store's typed error.
        """
        if "metadata_json" not in data_source.retrieve.series:
            return None
        now, caller = time.monotonic(), _caller()
        entry = self._settled(study)
        with self._state:
            refused = study in self._refused
        if refused or self._fresh(entry, name, now, caller):
            return None
        if entry is not None:
            self._drop(study, entry)
        elif self.host.metadata_store.get_study(study) is not None:
            self._drop(study, None, data_source)  # filled elsewhere: start from this source's own view
        fetched = data_source.retrieve.series.metadata_json(study, series_instance_uids=[series] if series else None)
        if fetched is None:
            return None
        body = backend_metadata_json(fetched.datasets, root, study)
        loaded = _Loaded(name, now, None if series is None else frozenset({series}), caller=caller)
        loaded.bodies[(series, root)] = body
        loaded.filling = threading.Event()
        sent = threading.Event()
        self._register(study, loaded)
        filler = threading.Thread(target=self._fill, args=(study, loaded, fetched, sent), name="datasources-fill")
        filler.daemon = True
        filler.start()
        return body, sent.set

    def _fill(self, study: str, loaded: _Loaded, fetched: SeriesMetadataJson, sent: threading.Event) -> None:
        """The store filled from the JSON an answer was made from, once that answer has left."""
        assert loaded.filling is not None
        sent.wait(SEND_WAIT)  # the answer first: the store is for the requests after it
        try:
            fetched.fill()
        except Exception as exc:  # any failure: nothing of it is kept, and the next load takes the store path
            log.warning(
                "gateway: study %s from %s was answered from the backend's JSON, which the store refused: %s",
                study,
                loaded.source,
                safe_message(exc),
            )
            self.host.metadata_store.remove_study(study)
            with self._state:
                if self._loaded.get(study) is loaded:
                    self._loaded.pop(study)
                self._refused[study] = None
                while len(self._refused) > self.max_cached_studies:
                    self._refused.popitem(last=False)
        finally:
            loaded.filling.set()  # the backend's JSON is freed as this thread ends, not on a request's time
