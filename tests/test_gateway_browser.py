"""The study browser at ``/`` in a real headless Chromium (Debian's ``chromium``) against a real uvicorn.

Screenshots are checked with Pillow (the page's colours are there, the thumbnails are real
gray-level images, nothing is blank) and the DOM after the scripts ran with ``--dump-dom``;
the server's own request log says the thumbnails were asked for, with the token when one is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from datasources import Host
from datasources.gateway import create_app
from support.orthanc import ensure_debian_packages
from test_gateway_support import served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI sets DATASOURCES_REQUIRE_CHROMIUM=1: there a missing browser fails the tests instead of skipping them
REQUIRED = os.environ.get("DATASOURCES_REQUIRE_CHROMIUM") == "1"


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    """Debian's chromium, installed with apt-get when missing and we are root (as the Orthanc fixture does)."""
    global CHROMIUM
    if CHROMIUM is None and ensure_debian_packages(["chromium"]):
        CHROMIUM = shutil.which("chromium")
    if CHROMIUM is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if REQUIRED:
            pytest.fail(f"DATASOURCES_REQUIRE_CHROMIUM=1 but {message}", pytrace=False)
        pytest.skip(message)


LEE_CT = "2.25.149445395880599934171435059992354054150"
TOKEN = "browser-token-7c1d0e"
BAND = (31, 42, 68)  # the header, #1f2a44
SELECTED = (219, 231, 255)  # the chosen study's row, #dbe7ff
TOKEN_FORM = (255, 244, 214)  # the "needs a token" bar, #fff4d6
WIDTH, HEIGHT = 1280, 800


def chromium(
    tmp_path: Path, url: str, *, screenshot: Path | None = None, size: tuple[int, int] = (WIDTH, HEIGHT)
) -> str:
    assert CHROMIUM is not None, "chromium is required (DATASOURCES_REQUIRE_CHROMIUM=1) but not installed"
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=15000",  # let the page's fetches finish before the capture
    ]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def colours(path: Path) -> tuple[object, dict[tuple[int, int, int], int]]:
    from PIL import Image

    image = Image.open(path).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    counts = {colour: n for n, colour in image.getcolors(WIDTH * HEIGHT)}
    return image, counts


def test_the_page_lists_studies_and_shows_series_thumbnails(tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    with served(create_app(Host())) as server:
        chromium(tmp_path, f"{server.url}/?study={LEE_CT}", screenshot=shot)
        thumbnails = server.hits("/thumbnail")
        assert len(thumbnails) == 2 and all(h.status == 200 for h in thumbnails)  # two series, one each
        assert all(f"/studies/{LEE_CT}/series/" in h.path for h in thumbnails)
        assert [h.status for h in server.hits("/api/sources")] == [200]
    image, counts = colours(shot)
    assert len(counts) > 100  # not blank: text, table, images
    assert counts.get(BAND, 0) > WIDTH * 30  # the header band
    assert counts.get(SELECTED, 0) > 5000  # the study row the address chose
    assert TOKEN_FORM not in counts  # no token asked for: the gateway has none
    # the thumbnails: 128x128 gray images drawn in the right-hand column
    column = image.crop((WIDTH // 2, 100, WIDTH, 500)).getcolors(WIDTH * HEIGHT)
    mid_grays = {c: n for n, c in column if c[0] == c[1] == c[2] and 0 < c[0] < 255}
    assert len(mid_grays) > 100 and sum(mid_grays.values()) > 20000  # far more than text anti-aliasing


def test_the_search_box_and_the_dom_after_the_scripts(tmp_path: Path) -> None:
    with served(create_app(Host())) as server:
        dom = chromium(tmp_path, f"{server.url}/?q=garcia")
        searches = [h.path for h in server.hits("/studies")]
    assert "GARCIA, JOSE" in dom and "CT ABDOMEN PELVIS W CONTRAST" in dom
    assert "LEE, ANNA K" not in dom and "MÜLLER, KLAUS" not in dom
    assert "1 study matching “garcia”" in dom
    assert len(searches) == 4  # name, ID, accession and description, merged
    with served(create_app(Host())) as server:
        dom = chromium(tmp_path, f"{server.url}/")
    assert dom.count('<tr data-uid="') == 6 and "6 studies" in dom


def test_a_token_from_the_address_fragment(tmp_path: Path) -> None:
    shot = tmp_path / "token.png"
    with served(create_app(Host(), token=TOKEN)) as server:
        chromium(tmp_path, f"{server.url}/?study={LEE_CT}#token={TOKEN}", screenshot=shot)
        thumbnails = server.hits("/thumbnail")
        assert len(thumbnails) == 2 and all(h.status == 200 and h.authorized for h in thumbnails)
        assert all(h.authorized for h in server.requests if "/dicom-web/" in h.path or "/api/" in h.path)
    _, counts = colours(shot)
    assert TOKEN_FORM not in counts and counts.get(SELECTED, 0) > 5000


def test_without_the_token_the_page_asks_for_it(tmp_path: Path) -> None:
    shot = tmp_path / "asks.png"
    with served(create_app(Host(), token=TOKEN)) as server:
        chromium(tmp_path, f"{server.url}/?study={LEE_CT}", screenshot=shot)
        assert [h.status for h in server.hits("/api/sources")] == [401]
        assert server.hits("/thumbnail") == []
        assert [h.status for h in server.hits("/") if h.path == "/"] == [200]
    _, counts = colours(shot)
    assert counts.get(TOKEN_FORM, 0) > WIDTH * 20 and SELECTED not in counts


# Run in the page after its scripts: every box of the study panel against every box of the
# series panel, the cells of each row against each other, the series cards against each
# other, and nothing wider than its panel; the findings are written into the DOM.
LAYOUT_CHECK = """
<script>
(async () => {
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < 300 && !(document.querySelectorAll("#series li").length &&
       document.querySelectorAll("#studies tbody tr").length); i++) await wait(50);
  await wait(300);
  const box = (e) => e.getBoundingClientRect();
  const hit = (a, b) =>
    a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : "");
  const visible = (e) => { const r = box(e); return r.width > 0 && r.height > 0; };
  const problems = [];
  const left = [...document.querySelectorAll("#studies-panel, #studies-panel *")].filter(visible);
  const right = [...document.querySelectorAll("#series-panel, #series-panel *")].filter(visible);
  for (const a of left) for (const b of right) if (hit(box(a), box(b))) problems.push(name(a) + " over " + name(b));
  for (const [panel, inside] of [["studies-panel", left], ["series-panel", right]]) {
    const edge = box(document.getElementById(panel));
    for (const e of inside) if (box(e).right > edge.right + 0.5) problems.push(name(e) + " sticks out of " + panel);
  }
  const pairs = (list, what) => list.forEach((a, i) => list.slice(i + 1).forEach((b) => {
    if (hit(box(a), box(b))) problems.push(`${what}: ${a.textContent.slice(0, 30)} over ${b.textContent.slice(0, 30)}`);
  }));
  for (const row of document.querySelectorAll("tr")) pairs([...row.children], "cells");
  pairs([...document.querySelectorAll("#series li")], "series");
  const [header, main] = [document.querySelector("header"), document.querySelector("main")];
  if (hit(box(header), box(main))) problems.push("header over main");
  const out = document.createElement("pre");
  out.id = "layout";
  out.textContent = JSON.stringify({
    problems: problems.slice(0, 20), count: problems.length,
    rows: document.querySelectorAll("#studies tbody tr").length,
    series: document.querySelectorAll("#series li").length,
    names: [...document.querySelectorAll("#studies tbody td:first-child")].map((td) => td.textContent),
  });
  document.body.appendChild(out);
})();
</script>
"""


@pytest.mark.parametrize("size", [(1400, 900), (1024, 768)], ids=["1400x900", "1024x768"])
def test_no_boxes_overlap_and_names_are_formatted_one_way(tmp_path: Path, size: tuple[int, int]) -> None:
    import json
    import re

    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    page = (Path(__file__).resolve().parents[1] / "core/datasources/gateway/static/index.html").read_text()

    async def checked_page(request: object) -> HTMLResponse:
        return HTMLResponse(page.replace("</body>", LAYOUT_CHECK + "</body>"))

    app = create_app(Host())
    app.router.routes.insert(0, Route("/layout-check", checked_page))  # the real page, with the check after it
    with served(app) as server:
        dom = chromium(tmp_path, f"{server.url}/layout-check?study={LEE_CT}", size=size)
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom, flags=re.S)
    assert found, "the layout check did not run"
    report = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert report["rows"] == 6 and report["series"] == 2, report
    assert report["problems"] == [], report
    # every name "FAMILY, GIVEN MIDDLE", whatever the number of components
    assert "GARCIA, JOSE" in report["names"] and "LEE, ANNA K" in report["names"], report["names"]
    assert all(re.fullmatch(r"[^,^]+, [^,^]+", n) for n in report["names"]), report["names"]
