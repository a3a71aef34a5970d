"""DICOMweb routes of the gateway: QIDO-RS, WADO-RS (metadata, frames, bulk data, rendered) and STOW-RS.

Every route exists twice: under ``/dicom-web`` (the default source) and under
``/{source}/dicom-web``. Query strings are percent-decoded once (``+`` is a space) and
validated with :func:`datasources.query.parse_search`, so a misspelt keyword is a 400 with
a suggestion, not a silent "everything" as Orthanc answers. Every URL the gateway hands
out (RetrieveURL, BulkDataURI) points back at the gateway, never at the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import attrs
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import multipart
from ..errors import DatasetError, InvalidQueryError, NotFoundError, NotSupportedError
from ..naturalize import denaturalize, is_tag, keyword_for_tag, paused_gc, vr_for_keyword
from ..query import SearchQuery, parse_search
from .frames import EXPLICIT_LE, call_bulk_data_uri, frame_count, part_media_type, source_frames
from .render import render_frame
from .state import Gateway

if TYPE_CHECKING:
    from ..interface import DataSource

__all__ = ["DICOM_JSON", "DicomWebRoutes", "qido_row_keys"]

DICOM_JSON = "application/dicom+json"

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


def _accepts(request: Request, *media: str) -> bool:
    header = request.headers.get("accept")
    if not header:
        return True
    for item in header.split(","):
        kind = item.split(";", 1)[0].strip().lower()
        if kind in ("*/*", "application/*") or kind in media:
            return True
    return False


def _require_json(request: Request) -> None:
    if not _accepts(request, DICOM_JSON, "application/json"):
        raise HTTPException(406, f"this resource is {DICOM_JSON}; the Accept header allows none of it")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=DICOM_JSON)


def _bulk_rewrite(dataset: dict[str, Any], base: str, path: tuple[str, ...] = ()) -> None:
    """Point every BulkDataURI of a DICOM JSON dataset at the gateway's bulk data route."""
    for tag, element in dataset.items():
        if "BulkDataURI" in element:
            element["BulkDataURI"] = f"{base}/bulkdata/{'/'.join((*path, tag))}"
        elif element.get("vr") == "SQ":
            for index, item in enumerate(element.get("Value") or ()):
                if isinstance(item, dict):
                    _bulk_rewrite(item, base, (*path, tag, str(index)))


def _drop_bulk(dataset: dict[str, Any]) -> None:
    for tag in [t for t, e in dataset.items() if "BulkDataURI" in e]:
        del dataset[tag]
    for element in dataset.values():
        if element.get("vr") == "SQ":
            for item in element.get("Value") or ():
                if isinstance(item, dict):
                    _drop_bulk(item)


def _frame_numbers(text: str) -> list[int]:
    numbers = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise InvalidQueryError(f"frame numbers are whole numbers from 1, separated by commas: {text!r}")
        numbers.append(int(part))
    return numbers


def _viewport(request: Request, default: tuple[int, int] | None) -> tuple[int, int] | None:
    value = request.query_params.get("viewport")
    if not value:
        return default
    parts = value.split(",")
    try:
        width, height = int(parts[0]), int(parts[1] if len(parts) > 1 else parts[0])
    except ValueError:
        raise InvalidQueryError(f"viewport is width,height in pixels, not {value!r}") from None
    if not (0 < width <= 4096 and 0 < height <= 4096):
        raise InvalidQueryError(f"viewport must be 1..4096 pixels each way, not {value!r}")
    return width, height


def _image_type(request: Request) -> str:
    header = (request.headers.get("accept") or "").lower()
    for item in header.split(","):
        kind = item.split(";", 1)[0].strip()
        if kind in ("image/png", "image/jpeg"):
            return kind
        if kind in ("*/*", "image/*"):
            return "image/png"
    if header and "image/png" not in header:
        raise HTTPException(406, "rendered images are image/png or image/jpeg")
    return "image/png"


class _Negotiated:
    __slots__ = ("multipart", "type")

    def __init__(self, multipart: bool, media_type: str) -> None:
        self.multipart = multipart
        self.type = media_type  # what the parts (or the single body) are labelled


_ANY = frozenset({"*", "*/*"})


def _negotiate(request: Request, media: str, ts: str | None, count: int) -> _Negotiated:
    """Multipart or one part, and the label, for frames / bulk data of ``media`` stored as ``ts``.

    ``type="application/octet-stream"`` takes native pixels; with ``transfer-syntax=*`` (what
    OHIF sends) or the stored transfer syntax it also takes compressed ones, labelled with
    their transfer syntax, as PACS answer it. Without either it means uncompressed only, and
    compressed frames are a 406: the gateway does not transcode.
    """
    header = request.headers.get("accept")
    if not header:
        return _Negotiated(True, media)
    native = media == "application/octet-stream" and ts in (None, EXPLICIT_LE)
    for item in header.split(","):
        kind, params = multipart.split_media_type(item)
        if kind in _ANY or kind == "multipart/*":
            return _Negotiated(True, media)
        if kind == "multipart/related":
            several, part = True, params.get("type", "application/octet-stream").lower()
        elif count == 1:
            several, part = False, kind
        else:
            continue
        wanted_ts = params.get("transfer-syntax")
        if part in _ANY:
            return _Negotiated(several, media)
        if part == "application/octet-stream" and (native or wanted_ts == "*" or (ts and wanted_ts == ts)):
            return _Negotiated(several, "application/octet-stream")
        if part == media and (wanted_ts in (None, "*") or wanted_ts == ts):
            return _Negotiated(several, media)
    raise HTTPException(
        406,
        f"the frames are {media}" + (f" (transfer syntax {ts})" if ts else "") + "; ask for "
        f'multipart/related; type="{media}"'
        + ("" if native else ' or type="application/octet-stream"; transfer-syntax=*'),
    )


def _part_type(media: str, ts: str | None) -> str:
    return f"{media}; transfer-syntax={ts}" if ts else media


class DicomWebRoutes:
    """The DICOMweb endpoints over a :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        table: list[tuple[str, Callable[[Request], Any], list[str]]] = [
            ("/studies", self.studies, ["GET", "POST"]),
            ("/studies/{study}", self.study, ["GET", "POST"]),
            ("/series", self.all_series, ["GET"]),
            ("/instances", self.all_instances, ["GET"]),
            ("/studies/{study}/series", self.series, ["GET"]),
            ("/studies/{study}/instances", self.study_instances, ["GET"]),
            ("/studies/{study}/metadata", self.study_metadata, ["GET"]),
            ("/studies/{study}/thumbnail", self.study_thumbnail, ["GET"]),
            ("/studies/{study}/series/{series}", self.series_retrieve, ["GET"]),
            ("/studies/{study}/series/{series}/instances", self.instances, ["GET"]),
            ("/studies/{study}/series/{series}/metadata", self.series_metadata, ["GET"]),
            ("/studies/{study}/series/{series}/thumbnail", self.series_thumbnail, ["GET"]),
            ("/studies/{study}/series/{series}/instances/{sop}", self.instance_retrieve, ["GET"]),
            ("/studies/{study}/series/{series}/instances/{sop}/metadata", self.instance_metadata, ["GET"]),
            ("/studies/{study}/series/{series}/instances/{sop}/rendered", self.rendered, ["GET"]),
            ("/studies/{study}/series/{series}/instances/{sop}/thumbnail", self.instance_thumbnail, ["GET"]),
            ("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}", self.frames, ["GET"]),
            ("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered", self.rendered, ["GET"]),
            ("/studies/{study}/series/{series}/instances/{sop}/bulkdata/{path:path}", self.bulkdata, ["GET"]),
        ]
        out = [Route(f"/dicom-web{path}", endpoint, methods=methods) for path, endpoint, methods in table]
        out += [Route(f"/{{source}}/dicom-web{path}", endpoint, methods=methods) for path, endpoint, methods in table]
        return out

    # -- helpers ---------------------------------------------------------------------------

    def _context(self, request: Request) -> tuple[str, DataSource, str]:
        """The source a request is for, and the gateway URL its DICOMweb root has."""
        given = request.path_params.get("source")
        name, data_source = self.gateway.data_source(given)
        base = self.gateway.base_url(request)
        root = f"{base}/dicom-web" if given is None else f"{base}/{quote(name, safe='')}/dicom-web"
        return name, data_source, root

    # -- QIDO-RS ---------------------------------------------------------------------------

    async def studies(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._stow(request, None)
        return await self._qido(request, "study")

    async def study(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._stow(request, request.path_params["study"])
        raise NotSupportedError(
            "retrieve study", reason="the gateway serves metadata, frames, bulk data and rendered images, not Part 10"
        )

    async def series_retrieve(self, request: Request) -> Response:
        raise NotSupportedError("retrieve series", reason="the gateway does not send Part 10 instances")

    async def instance_retrieve(self, request: Request) -> Response:
        raise NotSupportedError("retrieve instance", reason="the gateway does not send Part 10 instances")

    async def all_series(self, request: Request) -> Response:
        return await self._qido(request, "series")

    async def all_instances(self, request: Request) -> Response:
        return await self._qido(request, "instance")

    async def series(self, request: Request) -> Response:
        return await self._qido(request, "series", request.path_params["study"])

    async def study_instances(self, request: Request) -> Response:
        return await self._qido(request, "instance", request.path_params["study"])

    async def instances(self, request: Request) -> Response:
        return await self._qido(request, "instance", request.path_params["study"], request.path_params["series"])

    async def _qido(
        self, request: Request, level: str, study: str | None = None, series: str | None = None
    ) -> Response:
        _require_json(request)
        _, data_source, root = self._context(request)
        query = _split_lists(parse_search(level, _filters_of(request)))

        def work() -> bytes:
            rows = self._search(data_source, query, study, series)
            keys = None if "all" in query.includefield else self._keys(query, study is not None, series is not None)
            return orjson.dumps([self._qido_row(row, query.level, keys, root, study, series) for row in rows])

        return Response(await run_in_threadpool(work), media_type=DICOM_JSON)

    @staticmethod
    def _keys(query: SearchQuery, study: bool, series: bool) -> frozenset[str]:
        extra = {key.split(".", 1)[0] for key in query.filters} | set(query.includefield)
        return qido_row_keys(query.level, study, series) | extra

    @staticmethod
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

    def _search(
        self, data_source: DataSource, query: SearchQuery, study: str | None, series: str | None
    ) -> list[dict[str, Any]]:
        level = query.level
        if level == "study":
            return data_source.query.studies.search(self._params(query))
        if study is not None:
            try:
                if level == "series":
                    return data_source.query.series.search(study, self._params(query))
                return data_source.query.instances.search(study, series, self._params(query))
            except NotFoundError:
                return []  # QIDO: a search in an unknown study finds nothing
        try:
            if level == "series":
                return data_source.query.series.search(None, self._params(query))
            return data_source.query.instances.search(None, None, self._params(query))
        except _NO_STUDY_SEARCH:
            pass  # this source searches one study at a time: walk its studies
        return query.page(self._walk(data_source, query))

    def _walk(self, data_source: DataSource, query: SearchQuery) -> list[dict[str, Any]]:
        """An unscoped series or instance search over a source that only searches inside a study."""
        at_study = self._params(query, lambda k: k.split(".", 1)[0] in STUDY_FILTERS, paging=False)
        at_study.pop("includefield", None)
        rows: list[dict[str, Any]] = []
        for study_row in data_source.query.studies.search(at_study):
            uid = study_row.get("StudyInstanceUID")
            if not uid:
                continue
            study_part = {k: v for k, v in study_row.items() if k in STUDY_KEYS}
            if query.level == "series":
                params = self._params(query, lambda k: k.split(".", 1)[0] not in STUDY_FILTERS, paging=False)
                found = data_source.query.series.search(uid, params)
            else:
                at_series = self._params(query, lambda k: k.split(".", 1)[0] in SERIES_FILTERS, paging=False)
                at_series.pop("includefield", None)
                at_series.pop("fuzzymatching", None)
                params = self._params(
                    query, lambda k: k.split(".", 1)[0] not in STUDY_FILTERS | SERIES_FILTERS, paging=False
                )
                found = []
                for series_row in data_source.query.series.search(uid, at_series):
                    series_part = {k: v for k, v in series_row.items() if k in SERIES_KEYS}
                    for row in data_source.query.instances.search(uid, series_row["SeriesInstanceUID"], params):
                        found.append({**series_part, **row})
            for row in found:
                rows.append({**study_part, **row, "StudyInstanceUID": uid})
        return rows

    @staticmethod
    def _qido_row(
        row: Mapping[str, Any],
        level: str,
        keys: frozenset[str] | None,
        root: str,
        study: str | None,
        series: str | None,
    ) -> dict[str, Any]:
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
        dataset = denaturalize(record, skip_unknown=True)
        if level == "instance" and url and sop and se:
            _bulk_rewrite(dataset, url)
        else:
            _drop_bulk(dataset)
        return dataset

    # -- WADO-RS metadata ------------------------------------------------------------------

    @staticmethod
    def _metadata(instances: Sequence[Mapping[str, Any]], root: str, study: str) -> bytes:
        with paused_gc():  # thousands of small dicts: the cyclic GC would cost twice the work itself
            out = _metadata_datasets(instances, root, study)
        return orjson.dumps(out)

    async def study_metadata(self, request: Request) -> Response:
        _require_json(request)
        name, data_source, root = self._context(request)
        study = request.path_params["study"]

        def work() -> bytes:
            render = lambda instances: self._metadata(instances, root, study)  # noqa: E731
            return self.gateway.metadata_body(name, data_source, study, None, root, render)

        return Response(await run_in_threadpool(work), media_type=DICOM_JSON)

    async def series_metadata(self, request: Request) -> Response:
        _require_json(request)
        name, data_source, root = self._context(request)
        study, series = request.path_params["study"], request.path_params["series"]

        def work() -> bytes:
            render = lambda instances: self._metadata(instances, root, study)  # noqa: E731
            return self.gateway.metadata_body(name, data_source, study, series, root, render)

        return Response(await run_in_threadpool(work), media_type=DICOM_JSON)

    async def instance_metadata(self, request: Request) -> Response:
        _require_json(request)
        name, data_source, root = self._context(request)
        study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))

        def work() -> bytes:
            return self._metadata([self.gateway.instance(name, data_source, study, series, sop)], root, study)

        return Response(await run_in_threadpool(work), media_type=DICOM_JSON)

    # -- frames, bulk data, rendered -------------------------------------------------------

    async def frames(self, request: Request) -> Response:
        name, data_source, _ = self._context(request)
        study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))
        numbers = _frame_numbers(request.path_params["frames"])

        def work() -> tuple[list[bytes], Mapping[str, Any]]:
            meta = self.gateway.cached_instance(name, study, series, sop)
            if meta is not None and max(numbers) > frame_count(meta):
                raise NotFoundError(f"instance {sop} has {frame_count(meta)} frame(s), counted from 1: not {numbers}")
            loader = lambda: self.gateway.instance(name, data_source, study, series, sop)  # noqa: E731
            frames = source_frames(data_source, study, series, sop, numbers, loader)
            return frames, meta or self.gateway.cached_instance(name, study, series, sop) or {}

        frames, meta = await run_in_threadpool(work)
        media, ts = part_media_type(frames[0], meta) if frames else ("application/octet-stream", None)
        chosen = _negotiate(request, media, ts, len(frames))
        label = _part_type(chosen.type, ts)
        if not chosen.multipart:
            return Response(frames[0], media_type=label)
        body, boundary = multipart.build([(f, label) for f in frames])
        content_type = f'multipart/related; type="{chosen.type}"; boundary={boundary}'
        if ts:
            content_type += f"; transfer-syntax={ts}"
        return Response(body, headers={"Content-Type": content_type})

    async def bulkdata(self, request: Request) -> Response:
        name, data_source, _ = self._context(request)
        study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))
        path = [p for p in request.path_params["path"].split("/") if p]

        def work() -> bytes:
            instance = self.gateway.instance(name, data_source, study, series, sop)
            value, keyword = _resolve_path(instance, path)
            if isinstance(value, Mapping) and value.get("InlineBinary"):
                import base64

                return base64.b64decode(value["InlineBinary"])
            if not isinstance(value, Mapping) or not value.get("BulkDataURI"):
                raise NotFoundError(f"{'/'.join(path)} of instance {sop} is not bulk data")
            return call_bulk_data_uri(
                data_source,
                value["BulkDataURI"],
                tag=keyword,
                study_instance_uid=study,
                series_instance_uid=series,
            )

        data = await run_in_threadpool(work)
        chosen = _negotiate(request, "application/octet-stream", None, 1)
        if not chosen.multipart:
            return Response(data, media_type="application/octet-stream")
        body, boundary = multipart.build([(data, "application/octet-stream")])
        return Response(
            body, headers={"Content-Type": f'multipart/related; type="application/octet-stream"; boundary={boundary}'}
        )

    async def _render(
        self,
        request: Request,
        pick: Callable[[str, DataSource], tuple[str, str, Mapping[str, Any]]],
        frame: int,
        viewport: tuple[int, int] | None,
        thumbnail: bool = False,
    ) -> Response:
        media = _image_type(request)
        name, data_source, _ = self._context(request)
        size = _viewport(request, viewport)

        def work() -> bytes:
            series, sop, meta = pick(name, data_source)
            study = str(meta.get("StudyInstanceUID") or request.path_params["study"])
            if frame > frame_count(meta):
                raise NotFoundError(f"frame {frame} does not exist; instance {sop} has {frame_count(meta)}")
            pixels = source_frames(data_source, study, series, sop, [frame], lambda: meta)[0]
            return render_frame(pixels, meta, viewport=size, media_type=media, auto_window=thumbnail)

        image = await run_in_threadpool(work)
        return Response(image, media_type=media, headers={"Cache-Control": "private, max-age=300"})

    async def rendered(self, request: Request) -> Response:
        study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))
        frame = _frame_numbers(request.path_params["frames"])[0] if "frames" in request.path_params else 1

        def pick(name: str, data_source: DataSource) -> tuple[str, str, Mapping[str, Any]]:
            return series, sop, self.gateway.instance(name, data_source, study, series, sop)

        return await self._render(request, pick, frame, None)

    async def instance_thumbnail(self, request: Request) -> Response:
        study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))

        def pick(name: str, data_source: DataSource) -> tuple[str, str, Mapping[str, Any]]:
            return series, sop, self.gateway.instance(name, data_source, study, series, sop)

        return await self._render(request, pick, 1, (128, 128), thumbnail=True)

    async def series_thumbnail(self, request: Request) -> Response:
        study, series = request.path_params["study"], request.path_params["series"]

        def pick(name: str, data_source: DataSource) -> tuple[str, str, Mapping[str, Any]]:
            instance = _first_image(self.gateway.series_instances(name, data_source, study, series))
            return series, str(instance["SOPInstanceUID"]), instance

        return await self._render(request, pick, 1, (128, 128), thumbnail=True)

    async def study_thumbnail(self, request: Request) -> Response:
        study = request.path_params["study"]

        def pick(name: str, data_source: DataSource) -> tuple[str, str, Mapping[str, Any]]:
            instance = _first_image(self.gateway.study_instances(name, data_source, study))
            return str(instance["SeriesInstanceUID"]), str(instance["SOPInstanceUID"]), instance

        return await self._render(request, pick, 1, (128, 128), thumbnail=True)

    # -- STOW-RS ---------------------------------------------------------------------------

    async def _stow(self, request: Request, study: str | None) -> Response:
        from .stow import read_body, stow_response

        name, data_source, root = self._context(request)
        content_type = request.headers.get("content-type", "")
        kind, params = multipart.split_media_type(content_type)
        if kind != "multipart/related":
            raise HTTPException(415, 'STOW-RS takes multipart/related; type="application/dicom"')
        part_type = params.get("type", "application/dicom").lower()
        if part_type != "application/dicom":
            raise HTTPException(415, f"only application/dicom parts can be stored here, not {part_type}")
        body = await read_body(request, self.gateway.max_stow_bytes)
        parts = multipart.parse(body, content_type)
        if not parts:
            raise DatasetError("the STOW request holds no part")
        status, answer, stored_studies = await run_in_threadpool(stow_response, data_source, parts, study, root)
        if stored_studies:
            await run_in_threadpool(self.gateway.forget, name, data_source, stored_studies)
        return _json(answer, status)


def _resolve_path(instance: Mapping[str, Any], path: Sequence[str]) -> tuple[Any, str]:
    """Walk ``tag/index/tag...`` through a naturalized instance: the value found and its keyword."""
    node: Any = instance
    keyword = ""
    if not path or len(path) % 2 == 0:
        raise NotFoundError(f"bulk data path {'/'.join(path)!r} is not tag[/item/tag...]")
    for i, step in enumerate(path):
        if i % 2 == 0:
            if not is_tag(step):
                raise NotFoundError(f"bulk data path {'/'.join(path)!r}: {step!r} is not an 8-hex tag")
            keyword = keyword_for_tag(step) or step.upper()
            if not isinstance(node, Mapping) or keyword not in node:
                raise NotFoundError(f"instance has no {keyword} at {'/'.join(path[: i + 1])}")
            node = node[keyword]
        else:
            items = node if isinstance(node, list) else [node]
            if not step.isdigit() or int(step) >= len(items):
                raise NotFoundError(f"bulk data path {'/'.join(path)!r}: no item {step}")
            node = items[int(step)]
    if isinstance(node, list) and len(node) == 1:
        node = node[0]
    return node, keyword


def _first_image(instances: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The instance a thumbnail shows: the lowest InstanceNumber among those with pixels."""

    def order(inst: Mapping[str, Any]) -> tuple[float, str]:
        try:
            number = float(inst.get("InstanceNumber") or 0)
        except (TypeError, ValueError):
            number = 0.0
        return (number, str(inst.get("SOPInstanceUID")))

    images = [i for i in instances if i.get("Rows") and i.get("Columns")]
    if not images:
        raise NotFoundError("no instance with pixel data to make a thumbnail from")
    by_series: dict[str, list[Mapping[str, Any]]] = {}
    for inst in images:
        by_series.setdefault(str(inst.get("SeriesInstanceUID")), []).append(inst)
    first_series = min(by_series.values(), key=lambda group: _series_number(group[0]))
    return min(first_series, key=order)


def _series_number(instance: Mapping[str, Any]) -> float:
    try:
        return float(instance.get("SeriesNumber") or 0)
    except (TypeError, ValueError):
        return 0.0


def _metadata_datasets(instances: Sequence[Mapping[str, Any]], root: str, study: str) -> list[dict[str, Any]]:
    """DICOM JSON of each instance, its BulkDataURIs pointing at the gateway."""
    out = []
    for instance in instances:
        dataset = denaturalize(instance, skip_unknown=True)
        se, sop = instance.get("SeriesInstanceUID"), instance.get("SOPInstanceUID")
        _bulk_rewrite(
            dataset, f"{root}/studies/{instance.get('StudyInstanceUID') or study}/series/{se}/instances/{sop}"
        )
        out.append(dataset)
    return out
