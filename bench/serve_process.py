"""A real ``datasources serve`` process for the benchmarks: started on a free port, ready when every
worker answers ``/healthz``, stopped with SIGTERM (killed if it does not stop)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

__all__ = ["serve_process"]


@contextmanager
def serve_process(config: Path, *extra: str, workers: int = 1) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``datasources serve -c config`` with ``extra`` arguments; yields its base URL and the process."""
    exe = shutil.which("datasources")
    if exe is None:
        raise SystemExit("the datasources script is not installed (pip install -e '.[gateway]')")
    args = [exe, "serve", "-c", str(config), "--port", "0", "--log-level", "warning", *extra]
    if workers > 1:
        args += ["--workers", str(workers)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if not first.startswith("datasources gateway on "):
            raise SystemExit(f"the gateway did not start: {first!r}")
        base = first.split()[3]
        deadline = time.monotonic() + 60
        seen: set[int] = set()
        while len(seen) < workers:  # every worker answers
            try:
                seen.add(requests.get(f"{base}/healthz", headers={"Connection": "close"}, timeout=2).json()["pid"])
            except requests.RequestException:
                time.sleep(0.05)
            if time.monotonic() > deadline:
                raise SystemExit("the gateway's workers do not answer")
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
