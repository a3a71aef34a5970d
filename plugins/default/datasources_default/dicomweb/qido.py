"""QIDO-RS query strings that real servers understand, and what the client must still check itself.

Servers differ. Orthanc 1.10 never percent-decodes query values: ``PatientName=LEE%2A`` is
matched literally and finds nothing, and ``http.client`` cannot send a literal space at all.
So the default encoding (``minimal``) sends ``*``, ``?``, ``,``, ``-`` and ``.`` as they are,
turns characters no URL can carry raw (space, ``^``, non-ASCII) into the wildcard ``?`` (or
``*`` for a run of non-ASCII), sends backslash lists as comma lists, and percent-encodes only
``% & # + =``. Where that widened a filter, or where the server lacks wildcard or fuzzy
support, or is a static server that ignores the query, the plan says so and the source applies
the exact query to the answer with the shared matching rules. ``percent`` encodes everything
the standard way, for servers that decode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from datasources.naturalize import vr_for_keyword
from datasources.query import SearchQuery

__all__ = ["QueryPlan", "plan_query"]

_UNSAFE_RAW = re.compile(r"[ ^]|[^\x21-\x7e]+")
_PERCENT = str.maketrans({"%": "%25", "&": "%26", "#": "%23", "+": "%2B", "=": "%3D"})
_WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", None})


@dataclass(frozen=True)
class QueryPlan:
    """What to send, and whether the client must filter and page the answer itself."""

    query_string: str
    client_filter: bool  # apply the whole query to the answer with datasources.matching
    client_paging: bool  # the server must not page: limit/offset apply after client filtering

    def url(self, base: str) -> str:
        return f"{base}?{self.query_string}" if self.query_string else base


def _minimal(value: str, vr: str | None, wildcards: bool) -> tuple[str, bool] | None:
    """Value for a server that does not decode; None if it cannot be sent exactly or widened."""
    widened = False
    if _UNSAFE_RAW.search(value):
        if not wildcards or vr not in _WILDCARD_VRS:
            return None
        value = _UNSAFE_RAW.sub(lambda m: "?" if len(m.group()) == 1 and m.group() in " ^" else "*", value)
        widened = True
    return value.translate(_PERCENT), widened


def plan_query(
    query: SearchQuery,
    *,
    encoding: str = "minimal",
    supports_wildcard: bool = True,
    supports_fuzzy: bool = False,
    supports_include_field: bool = True,
    static: bool = False,
) -> QueryPlan:
    if static:
        # a static server answers every query with everything: filter and page here
        return QueryPlan("", client_filter=bool(query.filters) or query.fuzzymatching, client_paging=True)
    pairs: list[tuple[str, str]] = []
    client_filter = False
    for key, raw in query.filters.items():
        values = raw if isinstance(raw, list) else raw.split("\\")
        vr = vr_for_keyword(key.rsplit(".", 1)[-1])
        has_wildcard = any("*" in v or "?" in v for v in values)
        if has_wildcard and not supports_wildcard and not all(set(v) <= {"*"} for v in values):
            client_filter = True  # the server cannot do it: ask for more, narrow here
            continue
        if query.fuzzymatching and vr == "PN" and not supports_fuzzy:
            client_filter = True
            continue
        if encoding == "percent":
            pairs.append((quote(key, safe=""), quote(",".join(values) if len(values) > 1 else values[0], safe="*?,")))
            continue
        encoded = []
        for value in values:
            result = _minimal(value, vr, supports_wildcard)
            if result is None:
                encoded = []
                break
            text, widened = result
            client_filter = client_filter or widened
            encoded.append(text)
        if not encoded:
            client_filter = True
            continue
        # Orthanc (and most servers) take comma lists; a backslash list matches nothing there
        pairs.append((key, ",".join(encoded)))
    if query.fuzzymatching and supports_fuzzy:
        pairs.append(("fuzzymatching", "true"))
    if query.includefield and supports_include_field:
        pairs.append(("includefield", ",".join(query.includefield)))
    if not client_filter:
        if query.limit is not None:
            pairs.append(("limit", str(query.limit)))
        if query.offset:
            pairs.append(("offset", str(query.offset)))
    return QueryPlan("&".join(f"{k}={v}" for k, v in pairs), client_filter=client_filter, client_paging=client_filter)
