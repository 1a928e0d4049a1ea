"""Archives as users download them: a STAC ItemCollection of single-band COGs against the same
pixels supplied as a stacked sheet, both within an area of interest.

The archive is the demo region (one granule, three dates) written the way catalogs serve
Sentinel-2: one COG per band (B02, B03, B04, B08 at 20 m, B11 at 40 m), a scene classification
asset (SCL, 40 m) with a cloud on one date, the later dates processed with the +1000 offset of
baseline 04.00 declared in ``raster:bands``, and a fourth, cloudy item that ``max_cloud_cover``
drops. The sheet lists the same reflectances as 5-band float32 GeoTIFFs (B11 repeated 2 x 2, as
nearest resampling does) with the SCL as the mask column. Both runs must give the same taxonomy,
with every tile whose centre lies outside the area of interest left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform as warp
from runner import CONFIGS

from landtaxa.inputs.aoi import tile_mask
from landtaxa.inputs.demo.scene import make_demo
from landtaxa.inputs.demo.spec import DemoSpec, demo_dates, truth_path
from landtaxa.inputs.grid import Grid
from landtaxa.storage import load_npz

pytestmark = pytest.mark.slow
SPEC = DemoSpec(size=96, n_dates=3, granules=1)
BANDS = ["B02", "B03", "B04", "B08"]  # the demo's 4 bands, 20 m
MODELS = ("spectral", "geo")  # configs/stac.yaml: no refinement
TARGETS = ["results/metrics.json", *(f"results/maps/{m}_clusters.tif" for m in MODELS)]
SETTINGS = {"bands": [*BANDS, "B11"], "masks": {"asset": "SCL"}, "max_cloud_cover": 50}  # and configs/stac.yaml


def _cog(path: Path, array: np.ndarray, transform: Affine, nodata: float | None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=array.shape[-1], height=array.shape[-2],
                       count=1 if array.ndim == 2 else len(array), dtype=array.dtype.name, crs=SPEC.crs,
                       transform=transform, nodata=nodata) as dst:
        dst.write(array if array.ndim == 3 else array[None])
    return str(path)


def make_archive(root: Path) -> tuple[Path, Path, Path]:
    """The STAC ItemCollection, the equivalent sheet and the area of interest (GeoJSON, EPSG:4326)."""
    inventory = make_demo(SPEC, root / "demo")
    x0, y0 = SPEC.origin
    t20, t40 = Affine(20, 0, x0, 0, -20, y0), Affine(40, 0, x0, 0, -40, y0)
    features, rows = [], ["date\tgranule\tpath\tmask"]
    for i, (date, _, path) in enumerate([*inventory, inventory[-1]]):
        cloudy, new_baseline = i == 3, i >= 1
        item_date = "2023-12-20" if cloudy else date
        with rasterio.open(path) as src:
            dn = src.read().astype(np.int64)  # reflectance x 1e4, 0 = nodata
        b11 = dn[3].reshape(48, 2, 48, 2).mean((1, 3)).round().astype(np.int64)
        b11[(dn[3] == 0).reshape(48, 2, 48, 2).any((1, 3))] = 0
        scl = np.full((48, 48), 4, np.uint8)
        if i == 1:
            scl[:12, 30:] = 9  # a cloud in the north-east on the second date
        offset = 1000 if new_baseline else 0
        item_id = f"S2A_30TWN_{item_date.replace('-', '')}_0_L2A"
        folder = root / "stac" / item_id
        assets = {}
        for band, data, t in [*zip(BANDS, dn, [t20] * 4, strict=True), ("B11", b11, t40)]:
            stored = np.where(data > 0, data + offset, 0).astype(np.uint16)
            raster = {"data_type": "uint16", "nodata": 0, "scale": 1e-4, **({"offset": -0.1} if offset else {})}
            assets[band] = {"href": f"{item_id}/{band}.tif", "roles": ["data"], "raster:bands": [raster],
                            "type": "image/tiff; application=geotiff; profile=cloud-optimized"}
            _cog(folder / f"{band}.tif", stored, t, 0)
        assets["SCL"] = {"href": f"{item_id}/SCL.tif", "roles": ["data"], "raster:bands": [{"data_type": "uint8"}]}
        scl_path = _cog(folder / "SCL.tif", scl, t40, None)
        features.append({
            "type": "Feature", "stac_version": "1.0.0", "id": item_id, "links": [], "assets": assets,
            "geometry": None, "properties": {"datetime": f"{item_date}T10:30:00Z", "s2:mgrs_tile": "30TWN",
                                             "eo:cloud_cover": 90.0 if cloudy else 5.0,
                                             "s2:processing_baseline": "04.00" if new_baseline else "03.01"}})
        if not cloudy:  # the same ground in physical units, as one stacked float32 raster
            b11_20 = np.repeat(np.repeat(b11, 2, 0), 2, 1)
            stack = np.stack([*dn, b11_20]).astype(np.float64) * 1e-4
            stack[np.stack([*dn, b11_20]) == 0] = np.nan
            stacked = _cog(root / "stacked" / f"{date}.tif", stack.astype(np.float32), t20, float("nan"))
            rows.append(f"{date}\t30TWN\t{stacked}\t{scl_path}")
    items = root / "stac" / "items.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    sheet = root / "stacked.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    # the area of interest: a triangle over the western 60 % of the region, as a lon/lat polygon
    xs, ys = [x0, x0 + 0.6 * 96 * 20, x0], [y0, y0, y0 - 96 * 20]
    lon, lat = warp(SPEC.crs, "EPSG:4326", xs, ys)
    aoi = root / "aoi.geojson"
    ring = [*zip(lon, lat, strict=True), (lon[0], lat[0])]
    aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return items, sheet, aoi


@pytest.fixture(scope="module")
def runs(snakemake, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stac archive")
    items, sheet, aoi = make_archive(root)
    out = {}
    for name, images, extra in (("stac", items, SETTINGS), ("sheet", sheet, {})):
        work = root / f"{name} run"
        work.mkdir()
        overlay = work / "run.yaml"
        overlay.write_text(json.dumps({**extra, "images": str(images), "aoi": str(aoi),
                                       "truth": str(truth_path(root / "demo"))}))
        snakemake.ok(work, *TARGETS, "--cores", "2", configs=[CONFIGS / "stac.yaml", overlay])
        out[name] = work
    out["aoi"] = aoi
    return out


def test_stac_items_give_the_taxonomy_of_the_same_stacked_pixels(runs) -> None:
    for model in MODELS:
        a, b = (load_npz(runs[r] / f"results/clusters/{model}/k3.npz") for r in ("stac", "sheet"))
        np.testing.assert_array_equal(a["tile_ids"], b["tile_ids"])
        np.testing.assert_array_equal(a["labels"], b["labels"], err_msg=model)
    metrics = [json.loads((runs[r] / "results/metrics.json").read_text()) for r in ("stac", "sheet")]
    assert metrics[0] == metrics[1]
    assert metrics[0]["geo"]["n_dates"] == 3  # the cloudy fourth item was dropped


def test_offsets_applied_and_masks_from_the_scl_asset(runs) -> None:
    """The later dates, stored with +1000, read as the same reflectance as the first; SCL clouds masked."""
    dates = demo_dates(SPEC)
    with rasterio.open(runs["stac"] / f"results/aligned/{dates[1]}.tif") as src:
        assert src.count == 5 and src.dtypes[0] == "float32"
        aligned, valid = src.read(), src.read_masks(1) > 0
    with rasterio.open(make_demo_path(runs, dates[1])) as src:
        dn = src.read().astype(np.float64)[:, :, : aligned.shape[2]]  # the grid is cut to the AOI's west
    ok = valid & (dn[0] > 0)
    np.testing.assert_allclose(aligned[0][ok], dn[0][ok] * 1e-4, rtol=1e-6)
    assert not valid[:24, 60:].any() and valid[24:, 60:].any()  # the SCL cloud (40 m pixels 0..11 x 30..47)
    vrt = next((runs["stac"] / "results/sources").glob(f"*{dates[1].replace('-', '')}*.vrt"))
    assert "<ScaleOffset>-0.1</ScaleOffset>" in vrt.read_text()


def make_demo_path(runs, date: str) -> Path:
    return next((runs["stac"].parent / "demo" / "images").glob(f"{date}_*.tif"))


def test_tiles_outside_the_area_of_interest_are_left_out(runs) -> None:
    work = runs["stac"]
    grid = Grid.load(work / "results/grid.json")
    inside = tile_mask(grid, runs["aoi"])
    assert 6 < inside.sum() < grid.n_tiles - 6 and grid.aoi == str(runs["aoi"])
    assert grid.width <= 64  # the grid covers the AOI's bounds, not the whole region (96 px)
    for model in MODELS:
        c = load_npz(work / f"results/clusters/{model}/k3.npz")
        assert inside[c["tile_ids"]].all()
        with rasterio.open(work / f"results/maps/{model}_clusters.tif") as src:
            assert (src.read(1).reshape(-1)[~inside] == 255).all()
        metrics = json.loads((work / "results/metrics.json").read_text())[model]
        assert sum(metrics["cluster_km2"]) == pytest.approx(metrics["n_tiles"] * 0.1024)  # 320 m tiles
    fractions = load_npz(work / f"results/aligned/{demo_dates(SPEC)[0]}_valid.npz")["fraction"].reshape(-1)
    assert (fractions[~inside] == 0).all()
