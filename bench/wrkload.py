"""The gateway's load from wrk (C, keep-alive) instead of Python threads: the same URL walk, a load
generator that costs the machine almost nothing, so the cores go to the gateway and its backends.

``bench_workers.py --client wrk`` uses it; Debian's ``wrk`` package provides the binary.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from support.loadgen import LoadResult

__all__ = ["wrk_load"]

# each wrk thread walks the URL list from its own offset; done() prints one JSON line of totals
SCRIPT = r"""
local urls, threads, counter = {}, {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
function init(args)
  for line in io.lines(args[1]) do
    local kind, path, accept = line:match("([^\t]*)\t([^\t]*)\t(.*)")
    table.insert(urls, {kind, path, accept})
  end
  i = (id - 1) * 7
  sent = {}
end
function request()
  i = i + 1
  local u = urls[(i % #urls) + 1]
  sent[u[1]] = (sent[u[1]] or 0) + 1
  return wrk.format("GET", u[2], {["Accept"] = u[3]})
end
function done(summary, latency, requests)
  local kinds = {}
  for _, t in ipairs(threads) do
    local s = t:get("sent")
    for k, v in pairs(s) do kinds[k] = (kinds[k] or 0) + v end
  end
  local e = summary.errors
  local parts = {}
  for k, v in pairs(kinds) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write(string.format('{"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, "kinds": {%s}}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status, table.concat(parts, ", ")))
end
"""


def wrk_load(
    urls: Sequence[tuple[str, str, dict[str, str]]], connections: int, seconds: float
) -> tuple[LoadResult, float]:
    """``connections`` kept-alive connections walking ``urls`` for ``seconds``; the result and wrk's CPU seconds."""
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    base = urlsplit(urls[0][1])
    with tempfile.TemporaryDirectory() as tmp:
        script, listing = Path(tmp) / "walk.lua", Path(tmp) / "urls.tsv"
        script.write_text(SCRIPT, encoding="utf-8")
        rows = []
        for kind, url, headers in urls:
            parts = urlsplit(url)
            assert parts.netloc == base.netloc, "one origin"
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            rows.append(f"{kind}\t{path}\t{headers.get('Accept', '*/*')}")
        listing.write_text("\n".join(rows) + "\n", encoding="utf-8")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        argv = [exe, "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "30s", "-s", str(script),
                f"{base.scheme}://{base.netloc}/", "--", str(listing)]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(text for text in out.splitlines() if text.startswith('{"requests"'))
    totals = json.loads(line)
    failed = totals["errors"] + totals["status_errors"]
    result = LoadResult(
        requests=totals["requests"] - failed,
        failed=failed,
        seconds=totals["duration_us"] / 1e6,
        by_kind=totals["kinds"],
    )
    if failed:
        result.errors.append(f"wrk: {totals['errors']} socket errors, {totals['status_errors']} non-2xx answers")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, cpu
