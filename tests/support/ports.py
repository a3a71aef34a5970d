"""Ports for test servers that must be told their port before they start (Orthanc, redis, DIMSE peers).

Binding port 0 and closing the socket hands out a port from the kernel's ephemeral range, the
range every outgoing connection and every other ``bind(0)`` draws from: between that pick and
the server's own bind, a client socket of a parallel test can take it (Orthanc then fails to
start, or a C-MOVE goes to the wrong listener). These ports come from below the ephemeral range,
each xdist worker from its own slice, each checked bindable and handed out once per process.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

__all__ = ["free_port"]

_FLOOR = 20000  # above the usual fixed service ports (redis 6379, Orthanc 8042/4242, ...)
_lock = threading.Lock()
_next: int | None = None


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _slice() -> tuple[int, int, int]:
    """This process's slice [begin, stop) of the range below the ephemeral ports (one per xdist
    worker), and where in it to start (apart for each process, so a second run does not retry the first's)."""
    low, high = _FLOOR, _ephemeral_low()
    if high - low < 1000:  # an ephemeral range that starts low: every port from 1024 below it (at least 1024)
        low, high = 1024, max(high, 2048)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker) if worker.isdigit() else 0
    width = (high - low) // max(1, count)
    begin = low + width * (index % max(1, count))
    return begin, begin + os.getpid() % max(1, width // 2), begin + width


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody listens on, outside the ephemeral range, never the same twice here."""
    global _next
    begin, first, stop = _slice()
    with _lock:
        port = first if _next is None else _next
        for _ in range(stop - begin):
            if port >= stop:
                port = begin  # wrap to the start of the slice
            candidate, port = port, port + 1
            if _bindable(candidate):
                _next = port
                return candidate
    raise RuntimeError(f"no free loopback port in {begin}..{stop}")
