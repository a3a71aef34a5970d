"""WADO-RS pixel handlers of the gateway: frames, bulk data, rendered images and thumbnails.

Frames and bulk data are sent as the source stores them (see :mod:`.frames` and
:mod:`.negotiation`); rendered images and thumbnails are made by :mod:`.render`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import multipart
from ..errors import InvalidQueryError, NotFoundError
from ..naturalize import is_tag, keyword_for_tag
from ..transcode import can_decode, to_native
from ..transfer import NATIVE, label_of
from .frames import (
    call_bulk_data_uri,
    frame_count,
    guess_native,
    source_frames,
    source_frames_async,
    transfer_syntax_of,
)
from .negotiation import Choice, NotAcceptable, image_type, negotiate
from .render import render_frame
from .state import source_of

if TYPE_CHECKING:
    from ..interface import DataSource
    from .state import Gateway

__all__ = ["bulkdata", "frames", "instance_thumbnail", "rendered", "series_thumbnail", "study_thumbnail"]


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


async def frames(request: Request) -> Response:
    gateway, name, data_source = source_of(request)
    study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))
    numbers = _frame_numbers(request.path_params["frames"])
    header = request.headers.get("accept")
    fetched = await source_frames_async(data_source, study, series, sop, numbers)
    ts = label_of(fetched[0]) if fetched is not None else None
    if fetched is not None and ts is not None:
        chosen = _choose(header, ts, len(fetched))
        if not chosen.transcode:  # the common case, all on the event loop
            return _frames_answer(chosen, fetched)

    def work() -> tuple[Choice, list[bytes]]:
        loader = lambda: gateway.instance(name, data_source, study, series, sop)  # noqa: E731
        if fetched is not None:
            frames = fetched
        else:
            meta = gateway.cached_instance(name, study, series, sop)
            if meta is not None and max(numbers) > frame_count(meta):
                raise NotFoundError(f"instance {sop} has {frame_count(meta)} frame(s), counted from 1: not {numbers}")
            frames = source_frames(data_source, study, series, sop, numbers, loader)
        ts = label_of(frames[0])
        fresh = None
        if ts is None:  # the source did not say: ask it (its metadata, loaded again if expired)
            fresh = loader()
            ts = transfer_syntax_of(fresh) or guess_native(frames[0], fresh)
        chosen = _choose(header, ts, len(frames))
        if chosen.transcode:
            meta = fresh or loader()
            frames = [to_native(frame, meta, ts) for frame in frames]
        return chosen, frames

    return _frames_answer(*await run_in_threadpool(work))


def _frames_answer(chosen: Choice, frames: list[bytes]) -> Response:
    if not chosen.multipart:
        return Response(frames[0], media_type=chosen.part_type)
    body, boundary = multipart.build([(f, chosen.part_type) for f in frames])
    return Response(body, headers={"Content-Type": chosen.content_type(boundary)})


def _choose(header: str | None, ts: str | None, count: int) -> Choice:
    try:
        return negotiate(header, ts, count, can_transcode=can_decode(ts))
    except NotAcceptable as exc:
        raise HTTPException(406, str(exc)) from None


async def bulkdata(request: Request) -> Response:
    gateway, name, data_source = source_of(request)
    study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))
    path = [p for p in request.path_params["path"].split("/") if p]

    def work() -> bytes:
        instance = gateway.instance(name, data_source, study, series, sop)
        value, keyword = _resolve_path(instance, path)
        if isinstance(value, Mapping) and value.get("InlineBinary"):
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
    ts = label_of(data)
    compressed = ts is not None and ts not in NATIVE
    chosen = _choose(request.headers.get("accept"), ts if compressed else None, 1)
    if compressed:  # encapsulated pixel data: labelled, under application/octet-stream
        chosen = Choice(chosen.multipart, "application/octet-stream", ts)
    if not chosen.multipart:
        return Response(data, media_type=chosen.part_type)
    body, boundary = multipart.build([(data, chosen.part_type)])
    return Response(body, headers={"Content-Type": chosen.content_type(boundary)})


async def _render(
    request: Request,
    pick: Callable[[Gateway, str, DataSource], tuple[str, str, Mapping[str, Any]]],
    frame: int,
    viewport: tuple[int, int] | None,
    thumbnail: bool = False,
) -> Response:
    media = image_type(request)
    gateway, name, data_source = source_of(request)
    size = _viewport(request, viewport)

    def work() -> bytes:
        series, sop, meta = pick(gateway, name, data_source)
        study = str(meta.get("StudyInstanceUID") or request.path_params["study"])
        if frame > frame_count(meta):
            raise NotFoundError(f"frame {frame} does not exist; instance {sop} has {frame_count(meta)}")
        pixels = source_frames(data_source, study, series, sop, [frame], lambda: meta)[0]
        return render_frame(pixels, meta, viewport=size, media_type=media, auto_window=thumbnail)

    image = await run_in_threadpool(work)
    return Response(image, media_type=media, headers={"Cache-Control": "private, max-age=300"})


async def rendered(request: Request) -> Response:
    study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))
    frame = _frame_numbers(request.path_params["frames"])[0] if "frames" in request.path_params else 1

    def pick(gateway: Gateway, name: str, data_source: DataSource) -> tuple[str, str, Mapping[str, Any]]:
        return series, sop, gateway.instance(name, data_source, study, series, sop)

    return await _render(request, pick, frame, None)


async def instance_thumbnail(request: Request) -> Response:
    study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))

    def pick(gateway: Gateway, name: str, data_source: DataSource) -> tuple[str, str, Mapping[str, Any]]:
        return series, sop, gateway.instance(name, data_source, study, series, sop)

    return await _render(request, pick, 1, (128, 128), thumbnail=True)


async def series_thumbnail(request: Request) -> Response:
    study, series = request.path_params["study"], request.path_params["series"]

    def pick(gateway: Gateway, name: str, data_source: DataSource) -> tuple[str, str, Mapping[str, Any]]:
        instance = _first_image(gateway.series_instances(name, data_source, study, series))
        return series, str(instance["SOPInstanceUID"]), instance

    return await _render(request, pick, 1, (128, 128), thumbnail=True)


async def study_thumbnail(request: Request) -> Response:
    study = request.path_params["study"]

    def pick(gateway: Gateway, name: str, data_source: DataSource) -> tuple[str, str, Mapping[str, Any]]:
        instance = _first_image(gateway.study_instances(name, data_source, study))
        return str(instance["SeriesInstanceUID"]), str(instance["SOPInstanceUID"]), instance

    return await _render(request, pick, 1, (128, 128), thumbnail=True)


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
