"""The study list of a static DICOMweb tree, parsed once and revalidated with its ETag/Last-Modified.

A static server answers every study search with the whole list (100k studies are tens of MB
of gzipped JSON), and the client filters it. Parsing dominates, so the parsed list is kept
with the validators the server sent; the next search sends ``If-None-Match`` /
``If-Modified-Since`` and a ``304`` reuses the list. Without a validator nothing is kept.
One list per URL and at most a few URLs per source; when the source forwards each client's
credentials, the list is kept per credential (a digest, never the credential itself).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from datasources.errors import MalformedResponseError
from datasources.forwarding import current_authorization
from datasources.naturalize import paused_gc

from .client import JSON_ACCEPT, DicomWebClient

__all__ = ["StaticList"]

MAX_LISTS = 4


class StaticList:
    """Parsed static study lists of one source, by URL (and by forwarded credential)."""

    def __init__(self, client: DicomWebClient, name: str) -> None:
        self.client = client
        self.name = name
        self._lists: dict[tuple[str, str], tuple[dict[str, str], list[Any]]] = {}
        self._lock = threading.Lock()

    def _key(self, url: str) -> tuple[str, str]:
        if not self.client.auth.forward:
            return (url, "")
        credential = current_authorization() or ""
        return (url, hashlib.sha256(credential.encode("utf-8", "surrogateescape")).hexdigest())

    def get(self, url: str) -> list[Any]:
        """The parsed list at ``url``: from the server, or the kept one if the server says 304."""
        key = self._key(url)
        with self._lock:
            kept = self._lists.get(key)
        conditional: dict[str, str] = {}
        if kept is not None:
            validators = kept[0]
            if "etag" in validators:
                conditional["If-None-Match"] = validators["etag"]
            if "last-modified" in validators:
                conditional["If-Modified-Since"] = validators["last-modified"]
        ok = (200, 204, 304) if kept is not None else (200, 204)
        response = self.client.request("GET", url, accept=JSON_ACCEPT, ok=ok, headers=conditional)
        if response.status_code == 304 and kept is not None:
            with self._lock:  # the most recently used list is the last evicted
                self._lists.pop(key, None)
                self._lists[key] = kept
            return kept[1]
        with paused_gc():  # the parse builds millions of objects: no collection over them
            rows = self.client.json_body(response, url)
        if not isinstance(rows, list):
            raise MalformedResponseError(f"{self.name}: the static study list is not a JSON array")
        validators = {
            name: value
            for name, value in (
                ("etag", response.headers.get("ETag")),
                ("last-modified", response.headers.get("Last-Modified")),
            )
            if value
        }
        with self._lock:
            if validators:
                if key not in self._lists and len(self._lists) >= MAX_LISTS:
                    self._lists.pop(next(iter(self._lists)))
                self._lists[key] = (validators, rows)
            else:
                self._lists.pop(key, None)
        return rows

    def clear(self) -> None:
        with self._lock:
            self._lists.clear()
