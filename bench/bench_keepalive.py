#!/usr/bin/env python3
"""Keep-alive request latency through the gateway: the socket ``datasources serve`` binds now, against the old one.

The same gateway app (the bundled sample) is served by uvicorn twice in this process, on two
listening sockets that differ only in how they are made:

- ``old``: ``socket.socket(family, SOCK_STREAM)``, as ``datasources serve`` bound it before
  (proto 0: asyncio then never sets ``TCP_NODELAY`` on the accepted connections);
- ``new``: ``datasources.cli.serve._listen`` (``IPPROTO_TCP`` and ``TCP_NODELAY``).

A ``requests`` session per server sends the same GETs on one kept-alive connection,
interleaved, and the latency of every request after the first is kept. Goal (issue 15): the
~40 ms Nagle/delayed-ACK wait gone, i.e. new/old well under 1 (the stall is 40 ms against an
answer of a few ms).

    python bench/bench_keepalive.py [--requests 200] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import requests
import uvicorn
from datasources import Host
from datasources.cli.serve import _listen
from datasources.gateway import create_app

HERE = Path(__file__).resolve().parent
PATHS = ["/api/sources", "/dicom-web/studies?limit=1", "/healthz"]


def old_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def start(sock: socket.socket) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = create_app(Host(), access_log=False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    servers = {"old": start(old_socket()), "new": start(_listen("127.0.0.1", 0))}
    sessions = {name: requests.Session() for name in servers}
    times: dict[str, dict[str, list[float]]] = {name: {p: [] for p in PATHS} for name in servers}
    for name, session in sessions.items():  # the first request opens the connection: not counted
        session.get(servers[name][2] + "/healthz").raise_for_status()
    for _ in range(args.requests // len(PATHS)):
        for path in PATHS:
            for name, session in sessions.items():
                start_at = time.perf_counter()
                session.get(servers[name][2] + path).raise_for_status()
                times[name][path].append(time.perf_counter() - start_at)
    for server, thread, _ in servers.values():
        server.should_exit = True
        thread.join(10)
    lines = [
        f"## Gateway keep-alive latency, {dt.date.today().isoformat()}",
        "",
        f"`python bench/bench_keepalive.py --requests {args.requests} --record`: the same GETs on one kept-alive "
        "connection to the same app, served on the old socket (`socket(AF_INET, SOCK_STREAM)`, proto 0) and on the "
        "one `datasources serve` binds now (`IPPROTO_TCP` + `TCP_NODELAY`), interleaved;"
        " the first request not counted.",
        "",
        "| path | old p50 ms | new p50 ms | new / old |",
        "| --- | --- | --- | --- |",
    ]
    for path in PATHS:
        old, new = statistics.median(times["old"][path]) * 1000, statistics.median(times["new"][path]) * 1000
        lines.append(f"| `{path}` | {old:.2f} | {new:.2f} | {new / old:.2f}x |")
    old_all = statistics.median([t for p in PATHS for t in times["old"][p]]) * 1000
    new_all = statistics.median([t for p in PATHS for t in times["new"][p]]) * 1000
    lines += ["", f"- all requests: old p50 {old_all:.2f} ms, new p50 {new_all:.2f} ms: {new_all / old_all:.2f}x", ""]
    text = "\n".join(lines)
    print(text)
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write("\n" + text)
        print("recorded in bench/RESULTS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
