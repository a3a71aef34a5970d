"""The study browser at ``/``: a static page (plain HTML and JavaScript, no build step).

The page itself holds no data, so it is public even when the gateway wants a token; it
calls the DICOMweb routes (QIDO-RS for studies and series, ``/thumbnail`` for a series'
first frame rendered as PNG) with ``Authorization: Bearer`` when given a token. The token
comes from a form or from ``#token=...`` in the address (a fragment never reaches a server
log) and is kept in the tab's ``sessionStorage`` only. ``/api/sources`` lists the sources.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from .state import gateway_of

__all__ = ["STATIC", "favicon", "index", "list_sources", "static_files"]

STATIC = Path(__file__).resolve().parent / "static"


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


async def favicon(request: Request) -> Response:
    return Response(status_code=204)


async def list_sources(request: Request) -> Response:
    """``/api/sources``: the served sources, their names and DICOMweb roots, for the page's picker."""
    gateway = gateway_of(request)
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


def static_files() -> StaticFiles:
    """The page's scripts and styles, served under ``/browser``."""
    return StaticFiles(directory=STATIC)
