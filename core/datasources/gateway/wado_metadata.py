"""WADO-RS metadata handlers of the gateway: a study's, a series' or an instance's DICOM JSON.

The metadata is read from the host's metadata store (filled through the source by
:class:`~datasources.gateway.state.Gateway`) and made once per load; a load from a source that
offers its backend's own JSON is answered from that, and the store filled once the answer has
left (:class:`_StoreFilledAfter`). Part 10 retrieval
(``/studies/{study}`` and below without ``/metadata``) is not offered: the gateway serves
metadata, frames, bulk data and rendered images.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import NotSupportedError
from .datasets import metadata_json
from .negotiation import DICOM_JSON, require_json
from .state import source_context

__all__ = [
    "instance_metadata",
    "retrieve_instance",
    "retrieve_series",
    "retrieve_study",
    "series_metadata",
    "study_metadata",
]


class _StoreFilledAfter(Response):
    """A metadata answer that tells the gateway when it has left (or failed to): the store fill waits for it."""

    def __init__(self, body: bytes, sent: Callable[[], None] | None) -> None:
        super().__init__(body, media_type=DICOM_JSON)
        self.sent = sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.sent is not None:
                self.sent()


async def _metadata(request: Request, series: str | None) -> Response:
    require_json(request)
    gateway, name, data_source, root = source_context(request)
    study = request.path_params["study"]

    def work() -> tuple[bytes, Callable[[], None] | None]:
        render = lambda instances: metadata_json(instances, root, study)  # noqa: E731
        return gateway.metadata_answer(name, data_source, study, series, root, render)

    return _StoreFilledAfter(*await run_in_threadpool(work))


async def study_metadata(request: Request) -> Response:
    return await _metadata(request, None)


async def series_metadata(request: Request) -> Response:
    return await _metadata(request, request.path_params["series"])


async def instance_metadata(request: Request) -> Response:
    require_json(request)
    gateway, name, data_source, root = source_context(request)
    study, series, sop = (request.path_params[k] for k in ("study", "series", "sop"))

    def work() -> bytes:
        return metadata_json([gateway.instance(name, data_source, study, series, sop)], root, study)

    return Response(await run_in_threadpool(work), media_type=DICOM_JSON)


async def retrieve_study(request: Request) -> Response:
    raise NotSupportedError(
        "retrieve study", reason="the gateway serves metadata, frames, bulk data and rendered images, not Part 10"
    )


async def retrieve_series(request: Request) -> Response:
    raise NotSupportedError("retrieve series", reason="the gateway does not send Part 10 instances")


async def retrieve_instance(request: Request) -> Response:
    raise NotSupportedError("retrieve instance", reason="the gateway does not send Part 10 instances")
