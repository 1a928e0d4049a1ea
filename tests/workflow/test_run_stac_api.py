"""From a STAC API to a taxonomy, and new acquisitions taken in by the same command.

A real STAC API (``rustac serve``, in memory) lists a small archive whose COGs a local server
serves with Range requests; that server stands in front of the API too, demands a token on every
request and answers about one request in ten with a 503 or a reset connection. The token reaches
the run as ``http_headers: {Authorization: env:LANDTAXA_TEST_TOKEN}``.

The route: the search and the run; the run from the saved ItemCollection gives the same tiles and
labels; the same command again plans nothing; items added to the API are searched by the same
command, which then plans the alignment and embedding of the new clear date only, and no training;
and no file of either run holds the token.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from http_servers import AssetServer, StacApi, free_port
from rasterio.warp import transform as warp
from runner import CONFIGS

from landtaxa.inputs.demo.scene import make_demo
from landtaxa.inputs.demo.spec import DemoSpec
from landtaxa.storage import load_npz

pytestmark = pytest.mark.slow
SPEC = DemoSpec(size=64, n_dates=4, granules=1)
BANDS = ["B02", "B03", "B04", "B08"]
MODELS = ("spectral", "geo")  # configs/stac.yaml: no refinement
TARGETS = ["results/metrics.json", *(f"results/maps/{m}_clusters.tif" for m in MODELS)]
TOKEN = secrets.token_hex(16)
SAVED = "results/sources/stac_items.json"


def _cog(path: Path, array: np.ndarray, transform: Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype.name, crs=SPEC.crs, transform=transform, nodata=0) as dst:
        dst.write(array, 1)


def _ring() -> list[list[float]]:
    """The region's corners in longitude/latitude (the items' footprint and the area of interest)."""
    x0, y0 = SPEC.origin
    side = SPEC.size * SPEC.pixel_size
    lon, lat = warp(SPEC.crs, "EPSG:4326", [x0, x0 + side, x0 + side, x0, x0], [y0, y0, y0 - side, y0 - side, y0])
    return [[x, y] for x, y in zip(lon, lat, strict=True)]


def make_archive(root: Path, base_url: str) -> tuple[list[dict], list[dict], Path]:
    """The items served first (three clear dates, one cloudy item), the items added later (a fourth clear
    date, another cloudy item), and the area of interest. Assets live under ``root/data``."""
    inventory = make_demo(SPEC, root / "demo")
    t20 = Affine(20, 0, SPEC.origin[0], 0, -20, SPEC.origin[1])
    items = []
    for i, (date, _, path) in enumerate(inventory):
        item_id = f"S2A_30TWN_{date.replace('-', '')}_0_L2A"
        with rasterio.open(path) as src:
            dn = src.read()  # uint16 reflectance x 1e4, 0 = nodata
        for band, data in zip(BANDS, dn, strict=True):
            _cog(root / "data" / item_id / f"{band}.tif", data, t20)
        scl = np.full(dn.shape[1:], 4, np.uint8)
        if i == 1:
            scl[:16, 40:] = 9  # a cloud on the second date
        _cog(root / "data" / item_id / "SCL.tif", scl, t20)
        items.append(_item(item_id, date, 5.0, base_url))
    cloudy = [_item(items[0]["id"].replace("0215", "0401"), "2023-04-01", 90.0, base_url, items[0]["id"]),
              _item(items[0]["id"].replace("0215", "1220"), "2023-12-20", 85.0, base_url, items[0]["id"])]
    aoi = root / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [_ring()]}}]}))
    return [*items[:3], cloudy[0]], [items[3], cloudy[1]], aoi


def _item(item_id: str, date: str, cloud: float, base_url: str, assets_of: str | None = None) -> dict:
    folder = f"{base_url}/data/{assets_of or item_id}"
    raster = [{"data_type": "uint16", "nodata": 0, "scale": 1e-4}]
    assets = {b: {"href": f"{folder}/{b}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                  "roles": ["data"], "raster:bands": raster} for b in BANDS}
    assets["SCL"] = {"href": f"{folder}/SCL.tif", "roles": ["data"], "raster:bands": [{"data_type": "uint8"}]}
    ring = _ring()
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "sentinel-2",
            "geometry": {"type": "Polygon", "coordinates": [ring]}, "links": [], "assets": assets,
            "bbox": [min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring),
                     max(p[1] for p in ring)],
            "properties": {"datetime": f"{date}T10:30:00Z", "s2:mgrs_tile": "30TWN", "eo:cloud_cover": cloud}}


def write_items(path: Path, items: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def files_holding(work: Path, text: str) -> list[str]:
    """Every file under ``work`` (results/, logs/, .snakemake/ and the rest) whose bytes contain ``text``."""
    needle = text.encode()
    return [str(p.relative_to(work)) for p in sorted(work.rglob("*")) if p.is_file() and needle in p.read_bytes()]


def mtimes(work: Path, *patterns: str) -> dict[str, int]:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for pattern in patterns for p in sorted(work.glob(pattern))}


@pytest.fixture(scope="module")
def route(snakemake, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("stac api")
    port = free_port()  # the asset server's, fixed: the items' hrefs name it
    first, added, aoi = make_archive(root, f"http://127.0.0.1:{port}")
    env = {"LANDTAXA_TEST_TOKEN": f"Bearer {TOKEN}"}
    out: dict = {"root": root}
    with StacApi(public_url=f"http://127.0.0.1:{port}") as api, \
            AssetServer(root, token=TOKEN, fail_share=0.06, drop_share=0.04, seed=7, upstream=api.url,
                        port=port) as server:
        api.serve(write_items(root / "first.json", first))
        settings = {"bands": BANDS, "masks": {"asset": "SCL"}, "max_cloud_cover": 50, "aoi": str(aoi), "truth": None,
                    "http_headers": {"Authorization": "env:LANDTAXA_TEST_TOKEN"},
                    "http": {"retries": 8, "retry_delay": 0.02, "timeout": 20, "connect_timeout": 5}}
        search = {"stac_api": server.url, "collections": ["sentinel-2"], "datetime": "2023-01-01/..", "page_size": 2}
        work = root / "api run"
        work.mkdir()
        overlay = work / "run.yaml"
        overlay.write_text(json.dumps({**settings, "images": search}))
        configs = [CONFIGS / "stac.yaml", overlay]
        out["first"] = snakemake.ok(work, *TARGETS, "--cores", "2", configs=configs, env=env, timeout=1500)
        out["labels"] = {m: dict(load_npz(work / f"results/clusters/{m}/k3.npz")) for m in MODELS}  # before the rerun
        out["kept"] = mtimes(work, SAVED, "results/sources/*.vrt", "results/grid.json", "results/models/*.pt",
                             "results/aligned/*")
        # the same labels from the saved ItemCollection, given as images in a fresh folder
        saved = work / SAVED
        again = root / "file run"
        again.mkdir()
        shutil.copy(saved, again / "items.json")
        (again / "run.yaml").write_text(json.dumps({**settings, "images": str(again / "items.json")}))
        snakemake.ok(again, *TARGETS, "--cores", "2", configs=[CONFIGS / "stac.yaml", again / "run.yaml"], env=env,
                     timeout=1500)
        # the same command, nothing new on the API
        out["nothing_new"] = snakemake(work, *TARGETS, "-n", "--cores", "1", configs=configs, env=env)
        out["after_nothing_new"] = mtimes(work, SAVED, "results/sources/*.vrt")
        # new acquisitions: the API serves two more items (one clear, one cloudy)
        api.serve(root / "first.json", write_items(root / "added.json", added))
        out["new"] = snakemake(work, *TARGETS, "-n", "--cores", "1", configs=configs, env=env)
        out["rerun"] = snakemake.ok(work, *TARGETS, "--cores", "2", configs=configs, env=env, timeout=1500)
        snakemake.ok(work, "--report", "report.html", *TARGETS, configs=configs, env=env, timeout=600)
        out["counts"] = server.counts
    out.update(work=work, again=again, new_date=added[0]["properties"]["datetime"][:10],
               added=sorted(i["id"] for i in added))
    return out


def test_the_api_run_equals_the_run_from_its_saved_item_collection(route) -> None:
    for model in MODELS:
        a, b = route["labels"][model], load_npz(route["again"] / f"results/clusters/{model}/k3.npz")
        np.testing.assert_array_equal(a["tile_ids"], b["tile_ids"])
        np.testing.assert_array_equal(a["labels"], b["labels"], err_msg=model)
    log = route["first"].stderr
    assert "STAC search of http://127.0.0.1:" in log and "4 items in 2 page(s)" in log
    assert "item S2A_30TWN_20230401_0_L2A (2023-04-01) dropped: eo:cloud_cover 90 is above max_cloud_cover 50" in log
    counts = route["counts"]
    assert counts.get("503", 0) >= 3 and counts.get("drop", 0) >= 2  # the runs met faults
    assert counts["requests"] > 100 and counts.get("unauthorised", 0) == 0  # and every request carried the token


def test_a_rerun_with_nothing_new_plans_nothing_and_rewrites_nothing(route, snakemake) -> None:
    proc = route["nothing_new"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert snakemake.jobs(proc.stdout + proc.stderr) == {}
    assert "nothing new since the last search (4 items); the file is left as it is" in proc.stderr
    before = {k: v for k, v in route["kept"].items() if k in route["after_nothing_new"]}
    assert route["after_nothing_new"] == before and SAVED in before


def test_new_items_plan_only_their_clear_date_and_no_training(route, snakemake) -> None:
    proc = route["new"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = snakemake.jobs(proc.stdout + proc.stderr)
    # the new date's mosaic, its geographic embedding, and the two baselines' band statistics (spectral, means)
    assert jobs["align"] == 1 and jobs["embed"] == 1 and jobs["embed_baseline"] == 2
    assert not {"grid", "train", "untrained", "refine", "series_train", "clusters_train"} & set(jobs), jobs
    new = route["new_date"]
    assert f"results/aligned/{new}.tif" in proc.stdout
    assert f"2 new item(s): {', '.join(route['added'])}" in proc.stderr
    assert "S2A_30TWN_20231220_0_L2A (2023-12-20) dropped: eo:cloud_cover 85" in proc.stderr
    kept = (route["work"] / "logs/stac_search.log").read_text()  # every search's lines, the console's too
    assert f"2 new item(s): {', '.join(route['added'])}" in kept and "nothing new since the last search" in kept
    # the rerun: the grid, the models, the first dates' mosaics untouched; the metrics now count four dates
    work = route["work"]
    now = mtimes(work, "results/grid.json", "results/models/*.pt", "results/aligned/*")
    assert {p: t for p, t in now.items() if p in route["kept"]} == {
        p: t for p, t in route["kept"].items() if p in now}
    assert set(now) - set(route["kept"]) == {f"results/aligned/{new}.tif", f"results/aligned/{new}_valid.npz"}
    metrics = json.loads((work / "results/metrics.json").read_text())
    assert metrics["geo"]["n_dates"] == 4 and metrics["geo"]["dates"][-1] == new


def test_the_token_is_in_no_file_of_either_run(route) -> None:
    """Every file: results/ (VRTs, the saved items, the report), logs/, .snakemake/ (metadata, logs)."""
    assert (route["work"] / "report.html").stat().st_size > 0
    for work in (route["work"], route["again"]):
        assert (work / ".snakemake/metadata").is_dir() and (work / "logs/align").is_dir()
        assert files_holding(work, TOKEN) == []
        # the scan reads those files: the asset server's address, which they do hold, is found
        held = files_holding(work, "/vsicurl/http://127.0.0.1:")
        assert any(p.startswith("results/sources/") for p in held) and any(p.startswith(".snakemake/") for p in held)
