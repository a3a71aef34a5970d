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


def chromium(tmp_path: Path, url: str, *, screenshot: Path | None = None) -> str:
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
        f"--window-size={WIDTH},{HEIGHT}",
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
    assert "GARCIA JOSE" in dom and "CT ABDOMEN PELVIS W CONTRAST" in dom
    assert "LEE, ANNA K" not in dom and "MÜLLER KLAUS" not in dom
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
