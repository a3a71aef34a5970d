"""A load generator for the gateway: N threads of mixed QIDO, metadata and frames requests for a while.

Each thread has its own keep-alive ``requests`` session and walks a list of URLs in turn
(a different start per thread), as viewers do; every answer is read in full and checked
(status 200 and a non-empty body). Used by the suite (a few seconds) and by
``bench/bench_workers.py`` (60 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

__all__ = ["LoadResult", "mixed_urls", "run_load"]


@dataclass
class LoadResult:
    requests: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Answered requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def mixed_urls(root: str, study: str, series: str, sops: Sequence[str]) -> list[tuple[str, str, dict[str, str]]]:
    """(kind, URL, headers) for one study: the worklist, the series, the metadata, each instance's first frame."""
    json_accept = {"Accept": "application/dicom+json"}
    frames_accept = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
    urls = [
        ("qido", f"{root}/studies?limit=25", json_accept),
        ("qido", f"{root}/studies/{study}/series", json_accept),
        ("metadata", f"{root}/studies/{study}/series/{series}/metadata", json_accept),
        ("metadata", f"{root}/studies/{study}/metadata", json_accept),
    ]
    base = f"{root}/studies/{study}/series/{series}/instances"
    urls += [("frames", f"{base}/{sop}/frames/1", frames_accept) for sop in sops]
    return urls


def run_load(
    urls: Sequence[tuple[str, str, dict[str, str]]], threads: int, seconds: float, headers: dict[str, str] | None = None
) -> LoadResult:
    """``threads`` threads requesting ``urls`` for ``seconds``; errors are kept (at most 50 described)."""
    result = LoadResult()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(offset: int) -> None:
        session = requests.Session()
        done = 0
        counts: dict[str, int] = {}
        i = offset
        while time.monotonic() < stop_at:
            kind, url, extra = urls[i % len(urls)]
            i += 1
            try:
                answer = session.get(url, headers={**extra, **(headers or {})}, timeout=60)
                ok = answer.status_code == 200 and len(answer.content) > 0
                problem = None if ok else f"{answer.status_code} {url}"
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__} {url}"
            with lock:
                if problem is None:
                    done += 1
                    counts[kind] = counts.get(kind, 0) + 1
                else:
                    result.failed += 1
                    if len(result.errors) < 50:
                        result.errors.append(problem)
        session.close()
        with lock:
            result.requests += done
            for kind, n in counts.items():
                result.by_kind[kind] = result.by_kind.get(kind, 0) + n

    start = time.monotonic()
    pool = [threading.Thread(target=worker, args=(n * 3,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    result.seconds = time.monotonic() - start
    return result
