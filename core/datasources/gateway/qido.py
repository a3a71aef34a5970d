"""QIDO-RS handlers of the gateway: study, series and instance searches, answered as DICOM JSON.

Query strings are percent-decoded once (``+`` is a space) and validated with
:func:`datasources.query.parse_search`, so a misspelt keyword is a 400 with a suggestion, not
a silent "everything" as Orthanc answers. A source that searches only inside one study is
walked study by study for an unscoped series or instance search.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import attrs
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidQueryError, NotFoundError, NotSupportedError
from ..naturalize import denaturalize, paused_gc, vr_for_keyword
from ..query import SearchQuery, parse_search
from ..shapes import dicom_json_planned
from .datasets import KeepsBulkData, bulk_rewrite, drop_bulk, drop_nested_bulk, rewrite_element
from .negotiation import DICOM_JSON, require_json
from .observe import note
from .state import source_context

if TYPE_CHECKING:
    from ..interface import DataSource

__all__ = [
    "qido_row_keys",
    "search_all_instances",
    "search_all_series",
    "search_series_instances",
    "search_studies",
    "search_study_instances",
    "search_study_series",
]

# Attributes a QIDO-RS answer carries without includefield (PS3.18 Tables 6.7.1-2, -2a, -2b),
# plus the UIDs a client needs to go one level down and the descriptions viewers show.
STUDY_KEYS = frozenset({
    "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
    "ModalitiesInStudy", "ReferringPhysicianName", "TimezoneOffsetFromUTC", "RetrieveURL", "PatientName",
    "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
})  # fmt: skip
SERIES_KEYS = frozenset({
    "SpecificCharacterSet", "Modality", "TimezoneOffsetFromUTC", "SeriesDescription", "RetrieveURL",
    "SeriesInstanceUID", "SeriesNumber", "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "RequestAttributesSequence", "StudyInstanceUID", "SeriesDate",
    "SeriesTime", "BodyPartExamined",
})  # fmt: skip
INSTANCE_KEYS = frozenset({
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "TimezoneOffsetFromUTC",
    "RetrieveURL", "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames", "StudyInstanceUID",
    "SeriesInstanceUID",
})  # fmt: skip
# Filters that belong to the study or series level, for sources that search one study at a time
STUDY_FILTERS = STUDY_KEYS | {"PatientAge", "IssuerOfPatientID", "OtherPatientIDs", "InstitutionName"}
SERIES_FILTERS = SERIES_KEYS - {"StudyInstanceUID", "SpecificCharacterSet", "RetrieveURL"} | {"ProtocolName"}

_NO_STUDY_SEARCH = (NotFoundError, InvalidQueryError, NotSupportedError, TypeError)


def qido_row_keys(level: str, study: bool, series: bool = False) -> frozenset[str]:
    """The default attributes of a QIDO row at ``level``; a search not scoped to a study (or to a
    series) also returns the attributes of the levels above, as PS3.18 6.7.1.2 lists them."""
    if level == "study":
        return STUDY_KEYS
    if level == "series":
        return SERIES_KEYS if study else SERIES_KEYS | STUDY_KEYS
    if series:
        return INSTANCE_KEYS
    return INSTANCE_KEYS | SERIES_KEYS if study else INSTANCE_KEYS | SERIES_KEYS | STUDY_KEYS


def _filters_of(request: Request) -> dict[str, Any]:
    """Query parameters, percent-decoded once; a repeated name gives a list (any of them matches)."""
    filters: dict[str, Any] = {}
    for name, value in parse_qsl(request.url.query, keep_blank_values=True):
        if name in filters:
            current = filters[name]
            filters[name] = [*current, value] if isinstance(current, list) else [current, value]
        else:
            filters[name] = value
    return filters


# Free-text VRs: a comma in their values is text. In any other VR it separates values (PS3.18 8.3.4.1)
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC", "PN", "AE", "UR"})


def _split_lists(query: SearchQuery) -> SearchQuery:
    """``ModalitiesInStudy=CT,MR`` or ``StudyInstanceUID=1.2,1.3``: any of the comma-separated values."""
    changed = {}
    for key, given in query.filters.items():
        if isinstance(given, str) and "," in given and vr_for_keyword(key.rsplit(".", 1)[-1]) not in _TEXT_VRS:
            parts = [part for part in given.split(",") if part]
            changed[key] = parts[0] if len(parts) == 1 else parts
    return attrs.evolve(query, filters={**query.filters, **changed}) if changed else query


async def search_studies(request: Request) -> Response:
    return await _qido(request, "study")


async def search_all_series(request: Request) -> Response:
    return await _qido(request, "series")


async def search_all_instances(request: Request) -> Response:
    return await _qido(request, "instance")


async def search_study_series(request: Request) -> Response:
    return await _qido(request, "series", request.path_params["study"])


async def search_study_instances(request: Request) -> Response:
    return await _qido(request, "instance", request.path_params["study"])


async def search_series_instances(request: Request) -> Response:
    return await _qido(request, "instance", request.path_params["study"], request.path_params["series"])


async def _qido(request: Request, level: str, study: str | None = None, series: str | None = None) -> Response:
    require_json(request)
    gateway, name, data_source, root = source_context(request)
    query = _split_lists(parse_search(level, _filters_of(request)))
    shared = gateway.shared_cache
    cache_key = f"{level}|{study}|{series}|{request.url.query}|{root}"

    def work() -> bytes:
        if shared is not None:
            cached = shared.get_qido(name, cache_key)
            if cached is not None:
                note(cache="redis")
                return cached
        rows = _search(data_source, query, study, series)
        if level == "study":
            rows = [complete_study(data_source, row) for row in rows]
        keys = None if "all" in query.includefield else _keys(query, study is not None, series is not None)
        with paused_gc():  # a row of small dicts per study: nothing for the cyclic GC to find
            body = b"[" + b",".join([_qido_json(row, query.level, keys, root, study, series) for row in rows]) + b"]"
        if shared is not None:
            note(cache="miss")
            shared.put_qido(name, cache_key, body)
        return body

    return Response(await run_in_threadpool(work), media_type=DICOM_JSON)


def complete_study(data_source: DataSource, row: Mapping[str, Any]) -> dict[str, Any]:
    """What a viewer needs to list a study: ModalitiesInStudy (from the series when the source
    leaves it empty: an empty one makes a worklist hide the study), the series and instance
    counts; StudyTime and AccessionNumber only when known."""
    record = {k: v for k, v in row.items() if not (k in ("StudyTime", "AccessionNumber") and v in (None, ""))}
    needs = (
        not record.get("ModalitiesInStudy")
        or record.get("NumberOfStudyRelatedSeries") is None
        or record.get("NumberOfStudyRelatedInstances") is None
    )
    uid = record.get("StudyInstanceUID")
    if not needs or not uid:
        return record
    try:
        series = data_source.query.series.search(uid)
    except (NotFoundError, NotSupportedError):
        series = []
    if not record.get("ModalitiesInStudy"):
        found = [m for m in dict.fromkeys(r.get("Modality") for r in series) if isinstance(m, str) and m]
        if found:
            record["ModalitiesInStudy"] = found
        else:
            record.pop("ModalitiesInStudy", None)
    if record.get("NumberOfStudyRelatedSeries") is None and series:
        record["NumberOfStudyRelatedSeries"] = len(series)
    if record.get("NumberOfStudyRelatedInstances") is None and series:
        counts = [r.get("NumberOfSeriesRelatedInstances") for r in series]
        if all(isinstance(c, int) for c in counts):
            record["NumberOfStudyRelatedInstances"] = sum(counts)  # type: ignore[arg-type]
        else:
            with contextlib.suppress(NotFoundError, NotSupportedError, KeyError):
                record["NumberOfStudyRelatedInstances"] = sum(
                    len(data_source.query.instances.search(uid, r["SeriesInstanceUID"])) for r in series
                )
    return record


def _keys(query: SearchQuery, study: bool, series: bool) -> frozenset[str]:
    extra = {key.split(".", 1)[0] for key in query.filters} | set(query.includefield)
    return qido_row_keys(query.level, study, series) | extra


def _params(query: SearchQuery, keys: Callable[[str], bool] | None = None, paging: bool = True) -> dict[str, Any]:
    params: dict[str, Any] = {k: v for k, v in query.filters.items() if keys is None or keys(k)}
    if paging and query.limit is not None:
        params["limit"] = query.limit
    if paging and query.offset:
        params["offset"] = query.offset
    if query.fuzzymatching:
        params["fuzzymatching"] = True
    if query.includefield:
        params["includefield"] = list(query.includefield)
    return params


def _search(data_source: DataSource, query: SearchQuery, study: str | None, series: str | None) -> list[dict[str, Any]]:
    level = query.level
    if level == "study":
        return data_source.query.studies.search(_params(query))
    if study is not None:
        try:
            if level == "series":
                return data_source.query.series.search(study, _params(query))
            return data_source.query.instances.search(study, series, _params(query))
        except NotFoundError:
            return []  # QIDO: a search in an unknown study finds nothing
    try:
        if level == "series":
            return data_source.query.series.search(None, _params(query))
        return data_source.query.instances.search(None, None, _params(query))
    except _NO_STUDY_SEARCH:
        pass  # this source searches one study at a time: walk its studies
    return query.page(_walk(data_source, query))


def _walk(data_source: DataSource, query: SearchQuery) -> list[dict[str, Any]]:
    """An unscoped series or instance search over a source that only searches inside a study."""
    at_study = _params(query, lambda k: k.split(".", 1)[0] in STUDY_FILTERS, paging=False)
    at_study.pop("includefield", None)
    rows: list[dict[str, Any]] = []
    for study_row in data_source.query.studies.search(at_study):
        uid = study_row.get("StudyInstanceUID")
        if not uid:
            continue
        study_part = {k: v for k, v in study_row.items() if k in STUDY_KEYS}
        if query.level == "series":
            params = _params(query, lambda k: k.split(".", 1)[0] not in STUDY_FILTERS, paging=False)
            found = data_source.query.series.search(uid, params)
        else:
            at_series = _params(query, lambda k: k.split(".", 1)[0] in SERIES_FILTERS, paging=False)
            at_series.pop("includefield", None)
            at_series.pop("fuzzymatching", None)
            params = _params(query, lambda k: k.split(".", 1)[0] not in STUDY_FILTERS | SERIES_FILTERS, paging=False)
            found = []
            for series_row in data_source.query.series.search(uid, at_series):
                series_part = {k: v for k, v in series_row.items() if k in SERIES_KEYS}
                for row in data_source.query.instances.search(uid, series_row["SeriesInstanceUID"], params):
                    found.append({**series_part, **row})
        for row in found:
            rows.append({**study_part, **row, "StudyInstanceUID": uid})
    return rows


def _qido_json(
    row: Mapping[str, Any],
    level: str,
    keys: frozenset[str] | None,
    root: str,
    study: str | None,
    series: str | None,
) -> bytes:
    """``orjson.dumps(_qido_row(...))``, written through the row's plan (:mod:`..shapes`) when one fits."""
    record, url = _qido_record(row, level, keys, root, study, series)
    hook = drop_nested_bulk if url is None else (lambda tag, element: rewrite_element(tag, element, url))
    try:
        body = dicom_json_planned(record, hook)
    except KeepsBulkData:
        body = None
    return body if body is not None else orjson.dumps(_qido_dataset(record, url))


def _qido_record(
    row: Mapping[str, Any],
    level: str,
    keys: frozenset[str] | None,
    root: str,
    study: str | None,
    series: str | None,
) -> tuple[dict[str, Any], str | None]:
    """The naturalized row as answered, and the URL its BulkDataURIs point at (None: they are left out)."""
    record = dict(row) if keys is None else {k: v for k, v in row.items() if k in keys}
    if study is not None:
        record.setdefault("StudyInstanceUID", study)
    if series is not None:
        record.setdefault("SeriesInstanceUID", series)
    st = record.get("StudyInstanceUID") or row.get("StudyInstanceUID")
    se = record.get("SeriesInstanceUID") or row.get("SeriesInstanceUID")
    sop = record.get("SOPInstanceUID")
    url = None
    if st:
        url = f"{root}/studies/{st}"
        if level in ("series", "instance") and se:
            url += f"/series/{se}"
            if level == "instance" and sop:
                url += f"/instances/{sop}"
    if url:
        record["RetrieveURL"] = url
    return record, url if level == "instance" and url and sop and se else None


def _qido_row(
    row: Mapping[str, Any],
    level: str,
    keys: frozenset[str] | None,
    root: str,
    study: str | None,
    series: str | None,
) -> dict[str, Any]:
    """A QIDO row as DICOM JSON: the reference :func:`_qido_json` writes the bytes of."""
    return _qido_dataset(*_qido_record(row, level, keys, root, study, series))


def _qido_dataset(record: dict[str, Any], url: str | None) -> dict[str, Any]:
    """The answered record (:func:`_qido_record`) as DICOM JSON, its BulkDataURIs pointed at ``url``."""
    dataset = denaturalize(record, skip_unknown=True)
    if url is not None:
        bulk_rewrite(dataset, url)
    else:
        drop_bulk(dataset)
    return dataset


# -- WADO-RS metadata ------------------------------------------------------------------
