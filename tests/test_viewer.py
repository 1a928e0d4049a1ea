"""Tests of the offline HTML viewer (landtaxa.products.viewer).

The page's data is checked from Python, and the page itself in a real headless browser:
Debian's Chromium driven by selenium (test dependencies; CI installs the ``chromium`` and
``chromium-driver`` packages). The browser tests are skipped only when those are absent.
Chromium runs with networking switched off as far as its flags allow: the page must need none.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landtaxa.inputs.grid import Grid, tile_areas_km2
from landtaxa.products.rasters import NODATA, label_image
from landtaxa.products.styles import class_labels, colour_bytes
from landtaxa.products.viewer import ATLAS_MAX_WIDTH, png_bytes, stretch_thumbnails, thumbnail_atlas, write_viewer

DATES = ["2023-03-01", "2023-07-25", "2023-10-02"]
THUMB_TILES = np.array([15, 21, 29])  # tiles with images; 15 is in cluster 1 and changes kind on 2023-10-02


def _grid() -> Grid:
    """6 rows x 5 columns of 100 m tiles."""
    return Grid(crs="EPSG:32630", transform=(10, 0, 500000, 0, -10, 4700000), width=50, height=60, tile_size=10,
                bands=[1, 2, 3], dtype="uint16", scale_min=[0] * 3, scale_max=[1000] * 3)


def _taxonomy() -> dict:
    """A 3-class taxonomy on the grid (tiles 0 and 7 have no data), kinds on 3 dates, thumbnails of 3 tiles.

    Cluster 0 is tiles 1-6 and 8-13, cluster 1 tiles 14-23, cluster 2 tiles 24-29.
    """
    grid = _grid()
    tile_ids = np.array([t for t in range(30) if t not in (0, 7)])
    labels = np.array([0] * 12 + [1] * 10 + [2] * 6)
    kind = np.repeat(labels[:, None], 3, axis=1)
    kind[12:17, 2] = 0  # tiles 14 ... 18 (cluster 1) take kind 0 on the last date
    kind[22:25, 1] = 1  # tiles 24 ... 26 (cluster 2) are kind 1 on the second date only
    colours = np.array([[0.25, 0.45, 0.65], [0.85, 0.2, 0.15], [0.15, 0.75, 0.35]])
    names = class_labels(labels, 3, tile_areas_km2(grid, tile_ids), kind, DATES)
    rng = np.random.default_rng(0)
    thumbs = rng.uniform(0, 1, (len(THUMB_TILES), 3, 8, 8, 3)).astype(np.float32)
    thumbs[0, 0, :2] = np.nan
    return {"grid": grid, "tile_ids": tile_ids, "labels": labels, "kind": kind, "colours": colours,
            "dates": DATES, "class_labels": names, "thumbnails": thumbs, "thumb_tile_ids": THUMB_TILES}


def _write(path: Path, **changes) -> tuple[Path, dict]:
    tax = {**_taxonomy(), **changes}
    return write_viewer(path, title="test <viewer> & co", **tax), tax


def _page_data(page: str) -> dict:
    block = re.search(r'<script id="landtaxa-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(block.group(1))


# --- the page's content, from Python -----------------------------------------------------------

def test_page_is_self_contained_and_holds_every_map(tmp_path: Path) -> None:
    out, tax = _write(tmp_path / "viewer" / "index.html")
    page = out.read_text(encoding="utf-8")
    assert "<title>test &lt;viewer&gt; &amp; co</title>" in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert not re.findall(r'(?:src|href)\s*=\s*"(?!data:)', page)  # nothing loaded from elsewhere
    data = _page_data(page)
    assert data["title"] == "test <viewer> & co"
    assert data["labels"] == tax["class_labels"] and data["dates"] == DATES
    assert data["colours"] == ["#{:02x}{:02x}{:02x}".format(*c) for c in colour_bytes(tax["colours"])]
    maps = np.frombuffer(zlib.decompress(base64.b64decode(data["maps"])), np.uint8).reshape(4, 6, 5)
    grid, ids = tax["grid"], tax["tile_ids"]
    np.testing.assert_array_equal(maps[0], label_image(grid, ids, tax["labels"]))
    for t in range(3):
        np.testing.assert_array_equal(maps[t + 1], label_image(grid, ids, tax["kind"][:, t]))
    assert maps[0, 0, 0] == NODATA and maps[0, 1, 2] == NODATA
    # the atlas: tile i on date t in slot i * T + t, in the common stretch
    thumbs = data["thumbs"]
    assert thumbs["tiles"] == THUMB_TILES.tolist() and thumbs["size"] == 8 and thumbs["per_row"] == 9
    atlas = np.asarray(Image.open(io.BytesIO(base64.b64decode(thumbs["atlas"].split(",", 1)[1]))))
    assert atlas.shape == (thumbs["height"], thumbs["width"], 3) == (8, 72, 3)
    expected = stretch_thumbnails(tax["thumbnails"])
    for i in range(3):
        for t in range(3):
            slot = i * 3 + t
            np.testing.assert_array_equal(atlas[:, slot * 8:(slot + 1) * 8], expected[i, t])
    assert not list((tmp_path / "viewer").glob(".*tmp*"))


def test_page_without_thumbnails_and_bad_inputs(tmp_path: Path) -> None:
    out, _ = _write(tmp_path / "index.html", thumbnails=None, thumb_tile_ids=None)
    assert _page_data(out.read_text())["thumbs"] is None
    tax = _taxonomy()
    with pytest.raises(ValueError, match="expected \\(28, 3\\)"):
        write_viewer(tmp_path / "x.html", tax["grid"], tax["tile_ids"], tax["labels"], tax["kind"][:, :2],
                     tax["colours"], DATES, tax["class_labels"])
    with pytest.raises(ValueError, match="thumbnails have shape"):
        write_viewer(tmp_path / "x.html", tax["grid"], tax["tile_ids"], tax["labels"], tax["kind"], tax["colours"],
                     DATES, tax["class_labels"], tax["thumbnails"][:2], THUMB_TILES)
    with pytest.raises(ValueError, match="beyond the 2 classes"):
        write_viewer(tmp_path / "x.html", tax["grid"], tax["tile_ids"], tax["labels"], tax["kind"],
                     tax["colours"][:2], DATES, tax["class_labels"][:2])
    assert not (tmp_path / "x.html").exists()


def test_png_bytes_decode_exactly() -> None:
    """The viewer's own PNG encoder, read back by Pillow (and by the browser, below)."""
    rgb = np.random.default_rng(1).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    rgb[0, :, 0] = np.arange(11) * 25  # wraps around modulo 256 in the Sub filter
    img = Image.open(io.BytesIO(png_bytes(rgb)))
    assert img.mode == "RGB" and img.size == (11, 7)
    np.testing.assert_array_equal(np.asarray(img), rgb)


def test_thumbnails_stretch_and_atlas_layout() -> None:
    images = np.zeros((2, 40, 100, 100, 3), np.float32)
    images[..., 0] = np.linspace(0, 0.5, 100)  # a red ramp across each tile
    images[1, 3] = np.nan
    images[0, 0, 0, :, 1] = 1.0  # a bright line in one image saturates, and leaves the stretch alone
    out = stretch_thumbnails(images)
    assert out.dtype == np.uint8
    hi = 2.5 * np.median(images[0, 1, ..., 0])  # 0 .. 2.5 x the median (0.25) to 0 .. 255, then gamma 0.8
    ramp = np.linspace(0, 0.5, 100)
    np.testing.assert_array_equal(out[0, 5, 7, :, 0], np.round(255 * np.clip(ramp / hi, 0, 1) ** 0.8))
    assert out[0, 0, 0, 0, 1] == 255 and out[0, 1, 0, 0, 1] == 0
    assert (out[1, 3] == 128).all()  # no data: mid grey
    png, layout = thumbnail_atlas(images, thumb_px=64)
    assert layout["size"] == 64 and layout["per_row"] == ATLAS_MAX_WIDTH // 64
    assert (layout["width"], layout["height"]) == (4096, 2 * 64)  # 80 slots: 64 on the first row, 16 on the next
    assert Image.open(io.BytesIO(png)).size == (4096, 128)


# --- the page in a real browser -----------------------------------------------------------------

def _browser_paths() -> tuple[str | None, str | None]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    return browser, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    """A headless Chromium with its console log, networking switched off, a fresh profile."""
    browser, chromedriver = _browser_paths()
    if browser is None or chromedriver is None:
        pytest.skip("Chromium or chromedriver not found: install Debian's chromium and chromium-driver "
                    "to test the viewer in a real browser")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (a test dependency) drives the browser")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="landtaxa-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1300,1100", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    for _ in range(100):
        if driver.execute_script("return document.body.dataset.ready || null"):
            break
        time.sleep(0.05)
    assert driver.execute_script("return document.body.dataset.ready") == "1"


def _console_problems(driver) -> list[dict]:
    """Errors and warnings in the browser's console, less Chrome's hint about repeated canvas readbacks,
    which the tests' own pixel reads (``_canvas_pixels``) cause, not the page."""
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")
            and "willReadFrequently" not in e["message"] and "will-read-frequently" not in e["message"]]


def _canvas_pixels(driver, tile_ids: np.ndarray) -> np.ndarray:
    """RGBA of the map canvas at the centre of each tile."""
    return np.array(driver.execute_script("""
        const c = document.getElementById("map"), ctx = c.getContext("2d");
        const nCols = arguments[1], s = c.width / nCols;
        return arguments[0].map((t) => Array.from(ctx.getImageData(
            Math.floor((t % nCols + 0.5) * s), Math.floor((Math.floor(t / nCols) + 0.5) * s), 1, 1).data));
    """, [int(t) for t in tile_ids], 5))


def _expected(colours: np.ndarray, values: np.ndarray) -> np.ndarray:
    rgb = np.array(colour_bytes(colours))
    return np.concatenate([rgb[values], np.full((len(values), 1), 255)], axis=1)


def _click_tile(driver, tile: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "map")
    w, h = canvas.size["width"], canvas.size["height"]
    row, col = divmod(tile, 5)
    ActionChains(driver).move_to_element_with_offset(
        canvas, int((col + 0.5) * w / 5) - w // 2, int((row + 0.5) * h / 6) - h // 2).click().perform()


def test_browser_loads_cleanly_and_draws_the_clusters(driver, tmp_path: Path) -> None:
    out, tax = _write(tmp_path / "index.html")
    _open(driver, out)
    assert _console_problems(driver) == []
    np.testing.assert_array_equal(_canvas_pixels(driver, tax["tile_ids"]), _expected(tax["colours"], tax["labels"]))
    assert _canvas_pixels(driver, np.array([0, 7]))[:, 3].tolist() == [0, 0]  # no data: transparent
    legend = driver.execute_script(
        "return Array.from(document.querySelectorAll('#legend .name')).map((e) => e.textContent)")
    assert legend == tax["class_labels"]


def test_browser_slider_steps_through_the_kinds(driver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out, tax = _write(tmp_path / "index.html")
    _open(driver, out)
    driver.find_element(By.ID, "show-kinds").click()
    before = _canvas_pixels(driver, tax["tile_ids"])
    np.testing.assert_array_equal(before, _expected(tax["colours"], tax["kind"][:, 0]))
    slider = driver.find_element(By.ID, "date-slider")
    for t in (1, 2):
        slider.send_keys(Keys.ARROW_RIGHT)  # the keyboard moves the slider as a user would
        assert driver.find_element(By.ID, "date-label").text == DATES[t]
        after = _canvas_pixels(driver, tax["tile_ids"])
        np.testing.assert_array_equal(after, _expected(tax["colours"], tax["kind"][:, t]))
        changed = tax["kind"][:, t] != tax["kind"][:, t - 1]
        assert changed.any() and (after[changed] != before[changed]).any(axis=1).all()
        assert (after[~changed] == before[~changed]).all()
        before = after
    assert driver.find_element(By.ID, "legend-title").text == f"Kinds on {DATES[2]}"
    assert _console_problems(driver) == []


def test_browser_click_shows_the_tile_over_time(driver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    out, tax = _write(tmp_path / "index.html")
    _open(driver, out)
    cells = "return Array.from(document.querySelectorAll('#timeline .cell .kind')).map((e) => e.textContent)"
    _click_tile(driver, 15)  # cluster 1, kind c1 -> c1 -> c0, with images
    assert driver.find_element(By.ID, "tile-title").text == "Tile 15 (row 3, col 0)"
    assert tax["class_labels"][1] in driver.find_element(By.ID, "tile-cluster").text
    assert driver.execute_script(cells) == ["c1", "c1", "c0"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline .cell .thumb")) == 3
    assert [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#timeline .badge")] == ["changed from c1"]
    assert "c1 \u2192 c1 \u2192 c0 (1 change)" in driver.find_element(By.ID, "tile-note").text
    # the images shown are the tile's, from the atlas, scaled up by a whole factor without smoothing
    left, top, size = driver.execute_script("""
        const el = document.querySelectorAll("#timeline .cell .thumb")[1];
        el.scrollIntoView({block: "center"});
        const r = el.getBoundingClientRect();
        return [r.left, r.top, r.width];""")
    f = size / 8
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    centres = ((np.arange(8) + 0.5) * f).astype(int)
    shown = shot[int(top) + centres[:, None], int(left) + centres[None, :]]
    np.testing.assert_array_equal(shown, stretch_thumbnails(tax["thumbnails"])[0, 1])

    _click_tile(driver, 20)  # cluster 1, stable, no images
    assert driver.execute_script(cells) == ["c1", "c1", "c1"]
    _click_tile(driver, 24)  # cluster 2, kind c1 on the second date only
    assert driver.execute_script(cells) == ["c2", "c1", "c2"]
    assert driver.find_elements(By.CSS_SELECTOR, "#timeline .cell .thumb") == []
    assert "No images kept for this tile: images were kept for 3 of the 28 tiles" in \
        driver.find_element(By.ID, "tile-note").text

    _click_tile(driver, 7)
    assert "no data" in driver.find_element(By.ID, "tile-cluster").text
    assert _console_problems(driver) == []


def test_browser_screenshot_shows_the_map_colours(driver, tmp_path: Path) -> None:
    out, tax = _write(tmp_path / "index.html")
    _open(driver, out)
    box = driver.execute_script("""
        const r = document.getElementById("map").getBoundingClientRect();
        return [r.left, r.top, r.width, r.height, window.devicePixelRatio];""")
    left, top, width, height, ratio = box
    assert ratio == 1 and width == 5 * height / 6 > 0
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    rows, cols = _grid().tile_rowcol(tax["tile_ids"])
    xs = (left + (cols + 0.5) * width / 5).astype(int)
    ys = (top + (rows + 0.5) * height / 6).astype(int)
    np.testing.assert_array_equal(shot[ys, xs], _expected(tax["colours"], tax["labels"])[:, :3])


def test_viewer_step_reads_the_workflow_s_files(tmp_path: Path) -> None:
    """The step: clusters, the evolution's kinds table, the representatives and the aligned dates."""
    import pandas as pd
    from rasters import write_raster

    from landtaxa.params import ViewerParams
    from landtaxa.products.viewer import viewer_step
    from landtaxa.storage import save_npz

    tax = _taxonomy()
    grid = tax["grid"]
    grid.save(tmp_path / "grid.json")
    cen = np.random.default_rng(1).normal(0, 1, (3, 3, 4)).astype(np.float32)
    save_npz(tmp_path / "k3.npz", labels=tax["labels"], centroids=cen, tile_ids=tax["tile_ids"],
             dates=np.array(DATES))
    n = len(tax["tile_ids"])
    pd.DataFrame({"tile_id": np.repeat(tax["tile_ids"], 3), "date": np.tile(DATES, n),
                  "kind": tax["kind"].reshape(-1)}).to_parquet(tmp_path / "labels.parquet")
    pd.DataFrame({"cluster": [0, 1, 2], "rank": 0, "tile_id": [1, 14, 24]}).to_csv(tmp_path / "reps.csv")
    aligned = [str(write_raster(tmp_path / f"{d}.tif", np.full((3, 60, 50), 500, "uint16"), "EPSG:32630",
                                (500000, 4700000, 10))) for d in DATES]
    out = tmp_path / "viewer" / "index.html"
    # the page opens on the model metrics.json names as main (the other candidate's files are never read)
    (tmp_path / "metrics.json").write_text('{"main": {"model": "consensus", "reason": "its members agree"}}')
    viewer_step(grid=str(tmp_path / "grid.json"), clusters=["missing.npz", str(tmp_path / "k3.npz")],
                kinds=["missing.parquet", str(tmp_path / "labels.parquet")],
                representatives=["missing.csv", str(tmp_path / "reps.csv")], aligned=aligned,
                model=["means", "consensus"], metrics=str(tmp_path / "metrics.json"), out=str(out),
                params=ViewerParams.from_json('{"viewer_tiles": 4}'))
    data = _page_data(out.read_text(encoding="utf-8"))
    assert data["dates"] == DATES and data["title"] == "landtaxa: consensus model, K=3"
    assert {1, 14, 24} <= set(data["thumbs"]["tiles"]) and len(data["thumbs"]["tiles"]) <= 7
    assert data["labels"][1].startswith("c1: 10 tiles") and "changes on 2023-10-02" in data["labels"][1]
    maps = np.frombuffer(zlib.decompress(base64.b64decode(data["maps"])), np.uint8).reshape(4, 6, 5)
    np.testing.assert_array_equal(maps[3].reshape(-1)[tax["tile_ids"]], tax["kind"][:, 2])
