"""The study browser at ``/``: a static page (plain HTML and JavaScript, no build step).

The page itself holds no data, so it is public even when the gateway wants a token; it
calls the DICOMweb routes (QIDO-RS for studies and series, ``/thumbnail`` for a series'
first frame rendered as PNG) with ``Authorization: Bearer`` when given a token. The token
comes from a form or from ``#token=...`` in the address (a fragment never reaches a server
log) and is kept in the tab's ``sessionStorage`` only. ``/api/sources`` lists the sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from .state import Gateway

__all__ = ["STATIC", "browser_routes"]

STATIC = Path(__file__).resolve().parent / "static"


def browser_routes(gateway: Gateway) -> list[BaseRoute]:
    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def sources(request: Request) -> Response:
        infos = {info.source_name: info for info in gateway.host.data_sources}
        base = gateway.base_url(request)
        listed = []
        for name in gateway.sources:
            info = infos.get(name)
            listed.append(
                {
                    "name": name,
                    "friendlyName": info.friendly_name if info else name,
                    "type": info.type if info else None,
                    "default": name == gateway.default_source,
                    "dicomweb": f"{base}/{quote(name, safe='')}/dicom-web",
                }
            )
        return Response(orjson.dumps(listed), media_type="application/json")

    return [
        Route("/", index, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/api/sources", sources, methods=["GET"]),
        Mount("/browser", StaticFiles(directory=STATIC), name="browser"),
    ]
