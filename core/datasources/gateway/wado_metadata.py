"""WADO-RS metadata handlers of the gateway: a study's, a series' or an instance's DICOM JSON.

The metadata is read from the host's metadata store (filled through the source by
:class:`~datasources.gateway.state.Gateway`) and made once per load. Part 10 retrieval
(``/studies/{study}`` and below without ``/metadata``) is not offered: the gateway serves
metadata, frames, bulk data and rendered images.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

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


async def study_metadata(request: Request) -> Response:
    require_json(request)
    gateway, name, data_source, root = source_context(request)
    study = request.path_params["study"]

    def work() -> bytes:
        render = lambda instances: metadata_json(instances, root, study)  # noqa: E731
        return gateway.metadata_body(name, data_source, study, None, root, render)

    return Response(await run_in_threadpool(work), media_type=DICOM_JSON)


async def series_metadata(request: Request) -> Response:
    require_json(request)
    gateway, name, data_source, root = source_context(request)
    study, series = request.path_params["study"], request.path_params["series"]

    def work() -> bytes:
        render = lambda instances: metadata_json(instances, root, study)  # noqa: E731
        return gateway.metadata_body(name, data_source, study, series, root, render)

    return Response(await run_in_threadpool(work), media_type=DICOM_JSON)


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
