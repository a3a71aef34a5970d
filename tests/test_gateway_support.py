"""A gateway app served by a real uvicorn on 127.0.0.1 in a thread, for the gateway tests; and its own tests.

``served(app)`` yields a :class:`Served` with ``.url`` and ``.requests`` (method, path, status
and whether an Authorization header came, for every request the server answered).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

__all__ = ["Hit", "Served", "served"]


@dataclass
class Hit:
    method: str
    path: str
    status: int
    authorized: bool


@dataclass
class Served:
    url: str
    requests: list[Hit] = field(default_factory=list)

    def hits(self, fragment: str) -> list[Hit]:
        return [h for h in self.requests if fragment in h.path]


def _recording(app: Any, log: list[Hit]) -> Any:
    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        authorized = any(k == b"authorization" for k, _ in scope["headers"])
        recorded = {"done": False}

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start" and not recorded["done"]:
                # recorded before the client can see the answer, so a test never races the log
                log.append(Hit(scope["method"], scope["path"], message["status"], authorized))
                recorded["done"] = True
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            if not recorded["done"]:  # the app failed before it answered
                log.append(Hit(scope["method"], scope["path"], 0, authorized))

    return wrapper


@contextmanager
def served(app: Any, *, log_config: Any = None) -> Iterator[Served]:
    """Serve ``app`` with uvicorn on a free loopback port until the block ends."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    result = Served(f"http://127.0.0.1:{port}")
    config = uvicorn.Config(
        _recording(app, result.requests), log_config=log_config, log_level="debug", lifespan="off", access_log=True
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield result
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_served_app_answers_on_loopback_and_stops() -> None:
    from datasources import Host
    from datasources.gateway import create_app

    with served(create_app(Host())) as server:
        assert server.url.startswith("http://127.0.0.1:")
        response = requests.get(f"{server.url}/dicom-web/studies", timeout=10)
        assert response.status_code == 200 and len(response.json()) == 6
        assert server.hits("/dicom-web/studies")[0].status == 200
        port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
