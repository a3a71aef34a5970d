"""A real ``redis-server`` (Debian's ``redis-server``) on 127.0.0.1, for the gateway's shared cache.

No persistence, a free port, stopped with the test. When it is missing it is installed with
apt-get if we are root; otherwise the test is skipped, unless ``DATASOURCES_REQUIRE_REDIS=1``
(set by ``.ci/run``), which makes that a failure::

    with RedisServer() as redis:
        redis.url            # redis://127.0.0.1:PORT/0
        redis.stop(); redis.start()   # an outage, and back on the same port
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from .orthanc import ensure_debian_packages
from .ports import free_port

__all__ = ["REQUIRE_ENV", "RedisServer", "require_redis"]

REQUIRE_ENV = "DATASOURCES_REQUIRE_REDIS"


def require_redis() -> str:
    """The ``redis-server`` binary, installed first when root; skips (or fails in CI) when missing."""
    exe = shutil.which("redis-server")
    if exe is None and ensure_debian_packages(["redis-server"]):
        exe = shutil.which("redis-server")
    if exe is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
        pytest.skip(message)
    return exe


class RedisServer:
    """One redis-server process on loopback."""

    def __init__(self) -> None:
        self.exe = require_redis()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
