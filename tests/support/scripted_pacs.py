"""A real pynetdicom Q/R SCP on 127.0.0.1 whose faults a test scripts: slow C-FIND, failing C-GET sub-operations.

Orthanc and dcmqrscp cannot be told to stall a C-FIND or to fail one instance of a C-GET;
this peer can. It answers Study Root C-FIND (study, series, image level, UID matching only)
and C-GET over a list of datasets, counts associations open at once, and applies:

``find_delay`` seconds before each C-FIND answer; ``fail_sops`` SOP Instance UIDs whose
C-GET sub-operation fails (sent with a SOP class the requestor did not offer, so the store
sub-operation genuinely cannot happen).
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

__all__ = ["ScriptedPacs"]

_LEVEL_KEYS = {
    "STUDY": ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate", "StudyDescription", "AccessionNumber"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
_UNIQUE = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}


class ScriptedPacs:
    def __init__(self, datasets: list[Any], aet: str = "SCRIPTED", ssl_context: Any = None) -> None:
        self.ssl_context = ssl_context
        self.datasets = datasets
        self.aet = aet
        self.find_delay = 0.0
        self.fail_sops: set[str] = set()
        self.open_now = 0
        self.open_peak = 0
        self.gets = 0
        self._lock = threading.Lock()
        self._server: Any = None
        self.port = 0

    # -- handlers ----------------------------------------------------------------------------

    def _opened(self, event: Any) -> None:
        with self._lock:
            self.open_now += 1
            self.open_peak = max(self.open_peak, self.open_now)

    def _closed(self, event: Any) -> None:
        with self._lock:
            self.open_now -= 1

    def _matches(self, query: Any, every_instance: bool = False) -> list[Any]:
        level = "IMAGE" if every_instance else str(query.QueryRetrieveLevel)
        found, seen = [], set()
        for ds in self.datasets:
            ok = all(
                not str(query.get(key, "") or "") or str(query.get(key)) == str(ds.get(key))
                for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
                if key in query
            )
            unique = str(ds.get(_UNIQUE[level]))
            if ok and unique not in seen:
                seen.add(unique)
                found.append(ds)
        return found

    def _find(self, event: Any) -> Any:
        query = event.identifier
        level = str(query.QueryRetrieveLevel)
        if self.find_delay:
            time.sleep(self.find_delay)
        for ds in self._matches(query):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            answer = copy.deepcopy(query)
            for key in _LEVEL_KEYS[level]:
                if key in ds:
                    setattr(answer, key, ds.get(key))
            yield 0xFF00, answer

    def _get(self, event: Any) -> Any:
        with self._lock:
            self.gets += 1
        matched = self._matches(event.identifier, every_instance=True)
        yield len(matched)
        for ds in matched:
            if str(ds.SOPInstanceUID) in self.fail_sops:
                odd = copy.deepcopy(ds)
                odd.SOPClassUID = "1.2.826.0.1.3680043.9.9999.1"  # not offered: the sub-operation fails
                yield 0xFF00, odd
            else:
                yield 0xFF00, ds

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ScriptedPacs:
        ae = AE(ae_title=self.aet)
        ae.add_supported_context(Verification)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        ae.dimse_timeout = 30
        handlers = [
            (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_GET, self._get),
            (evt.EVT_CONN_OPEN, self._opened),
            (evt.EVT_CONN_CLOSE, self._closed),
        ]
        self._server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=handlers, ssl_context=self.ssl_context
        )
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> ScriptedPacs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def source_config(self, **extra: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "calledAETitle": self.aet, "callingAETitle": "DATASOURCES",
                **extra}  # fmt: skip
