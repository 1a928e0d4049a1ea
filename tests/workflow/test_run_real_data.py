"""The workflow on REAL imagery: a Sentinel-2 NDVI series over Slovenia with land-use labels, and
new dates arriving in it.

The shared archive stores the dates as one multi-band GeoTIFF (band descriptions = acquisition
times) and the per-date valid-pixel masks likewise. The test unpacks the first acquisitions the way
a user's archive looks (one single-band GeoTIFF and one mask per acquisition, listed in a TSV sheet;
the two acquisitions of 2015-12-08 share a date and become two granules of that date, both clouded
over, as are four more), runs the whole workflow with the default training dates, then adds the
next acquisition to the sheet: only that date's alignment and embeddings run, and the cheap steps
after them; the grid, the models and the old mosaics are left as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from runner import REPO

from landtaxa.inputs.grid import Grid

DATA = REPO.parent / "shared" / "data" / "slovenia-s2-ndvi" / "geotiff"
FIRST, ADDED = 14, 14  # acquisitions 0..13 (13 dates) first, then acquisition 14 (2016-03-17, half clouded)
RUN = {
    "tile_size": 10,
    "masks": {"invalid": [0]},  # IS_VALID: 1 = clear, 0 = cloud or no data
    "max_missing": 0.8,
    "empty_dates": "keep",  # several acquisitions are clouded over entirely
    "n_clusters": 4,
    "encoder": {"name": "tilenet-lite", "z_dim": 32},
    "train": {"triplets": 300, "epochs": 2},
    "refine": {"triplets": 200, "epochs": 1},
    "cluster": {"n_init": 3},
    "members": {"count": 1},
    "analysis": {"restarts": 2, "projection_tiles": 100},
}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")]


def unpack(stack: Path, out_dir: Path, dtype: str) -> list[tuple[str, Path]]:
    """Write each band of ``stack`` as its own GeoTIFF; return (acquisition time, path)."""
    out_dir.mkdir(parents=True)
    files = []
    with rasterio.open(stack) as src:
        profile = {**src.profile, "count": 1, "dtype": dtype, "driver": "GTiff"}
        for b, when in enumerate(src.descriptions[: ADDED + 1], start=1):
            path = out_dir / f"{stack.stem.split('_')[0]}_{when[:10]}_{when[11:19].replace(':', '')}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(b).astype(dtype), 1)
            files.append((when, path))
    return files


def write_sheet(work: Path, rows: list[tuple[str, Path, Path]]) -> None:
    lines, seen = ["date\tgranule\tpath\tmask"], {}
    for when, img, msk in rows:
        seen[when[:10]] = seen.get(when[:10], 0) + 1
        lines.append(f"{when[:10]}\tpass{seen[when[:10]]}\t{img}\t{msk}")
    (work / "images.tsv").write_text("\n".join(lines) + "\n")


def mtimes(work: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for p in sorted(work.glob(pattern))}


@pytest.fixture(scope="module")
def slovenia(snakemake, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("slovenia")
    images = unpack(DATA / "NDVI_68dates.tif", work / "archive" / "ndvi", "float32")
    masks = unpack(DATA / "IS_VALID_68dates.tif", work / "archive" / "valid", "uint8")
    rows = [(when, img, msk) for (when, img), (_, msk) in zip(images, masks, strict=True)]
    write_sheet(work, rows[:FIRST])
    config = work / "run.yaml"
    config.write_text(json.dumps({**RUN, "images": str(work / "images.tsv"), "truth": str(DATA / "LULC.tif")}))
    snakemake.ok(work, "--cores", "2", configs=[config], timeout=1500)
    first = json.loads((work / "results/metrics.json").read_text())
    kept = {**mtimes(work, "results/grid.json"), **mtimes(work, "results/models/*.pt"),
            **mtimes(work, "results/aligned/*")}
    # a new acquisition arrives: listed in the sheet, nothing else changed
    write_sheet(work, rows[: ADDED + 1])
    planned = snakemake.planned(work, configs=[config])
    listed = sorted({when[:10] for when, _, _ in rows[:FIRST]})
    explicit = snakemake.planned(work, configs=[config, write_overlay(work, {"train": {"dates": listed}})])
    all_dates = snakemake.planned(work, configs=[config, write_overlay(work, {"train": {"dates": "all"}})])
    snakemake.ok(work, "--cores", "2", configs=[config], timeout=1500)
    return {"work": work, "first": first, "kept": kept, "planned": planned, "explicit": explicit,
            "all_dates": all_dates, "new_date": rows[ADDED][0][:10]}


def write_overlay(work: Path, setting: dict) -> Path:
    path = work / "overlay.yaml"
    path.write_text(json.dumps(setting))
    return path


def test_real_series_taxonomy(slovenia: dict) -> None:
    work = slovenia["work"]
    grid = Grid.load(work / "results/grid.json")
    with rasterio.open(DATA / "NDVI_68dates.tif") as src:
        crs, bounds, res = src.crs, src.bounds, src.res
    assert rasterio.crs.CRS.from_wkt(grid.crs) == crs
    # the grid starts at the image's corner, on its pixel lattice, and covers it with whole tiles
    assert grid.bounds[0] == pytest.approx(bounds.left) and grid.bounds[3] == pytest.approx(bounds.top)
    assert grid.bounds[2] >= bounds.right - 1e-6 and grid.bounds[1] <= bounds.bottom + 1e-6
    assert grid.resolution == pytest.approx(res[0]) and grid.n_bands == 1
    with rasterio.open(work / "results/maps/refined_clusters.tif") as src:
        assert src.crs == crs and src.transform == grid.tile_transform
        left, bottom, right, top = src.bounds
        assert (left, top) == pytest.approx((bounds.left, bounds.top))
        assert right - bounds.right < grid.tile_metres and bounds.bottom - bottom < grid.tile_metres
        img = src.read(1)
    metrics = json.loads((work / "results/metrics.json").read_text())
    print({m: {k: round(v, 3) for k, v in x.items() if k in ("ari", "nmi", "silhouette", "n_tiles")}
           for m, x in metrics.items() if m != "main"})
    assert list(metrics) == ["spectral", "means", "geo", "refined", "main"] and metrics["main"]["model"] == "refined"
    for m in (metrics[model] for model in ("spectral", "means", "geo", "refined")):
        assert m["n_dates"] == 14 and m["k"] == 4 and m["n_tiles"] == int((img != 255).sum())
        assert {"ari", "nmi"} <= set(m) and 0 <= m["nmi"] <= 1
    # the clouded acquisitions were masked: some dates have no valid tile at all, others are fully valid
    fractions = [np.load(f)["fraction"] for f in sorted((work / "results/aligned").glob("*_valid.npz"))]
    # (edge tiles of the grid lie partly outside the image: their clear-sky fraction is below 1)
    clear = np.max(fractions, axis=0)
    assert clear.max() == 1.0 and clear.min() > 0
    assert min(f.max() for f in fractions) == 0.0 and any(np.array_equal(f, clear) for f in fractions)


def test_a_new_date_reruns_only_its_work(slovenia: dict) -> None:
    work, new = slovenia["work"], slovenia["new_date"]
    assert slovenia["planned"] == {
        # one member: the new date's embeddings by the two baselines (spectral, means) and the two models
        "align": 1, "embed": 2, "embed_baseline": 2, "series": 4, "clusters": 4, "map": 4, "metrics": 1,
        "coverage": 1, "analysis": 4, "representatives": 4, "stability": 4, "evolution": 4, "kinds": 4,
        "tiles": 1, "viewer": 1}
    # the grid, the models and the old mosaics were not touched by the rerun
    now = {**mtimes(work, "results/grid.json"), **mtimes(work, "results/models/*.pt"),
           **mtimes(work, "results/aligned/*")}
    assert {p: t for p, t in now.items() if p in slovenia["kept"]} == slovenia["kept"]
    assert set(now) - set(slovenia["kept"]) == {f"results/aligned/{new}.tif", f"results/aligned/{new}_valid.npz"}
    grid = Grid.load(work / "results/grid.json")
    assert new not in grid.train_dates and len(grid.train_dates) == 13
    metrics = json.loads((work / "results/metrics.json").read_text())
    assert slovenia["first"]["geo"]["n_dates"] == 13
    assert metrics["geo"]["n_dates"] == 14 and metrics["geo"]["dates"][-1] == new


def test_training_dates_given_as_a_list_behave_alike(slovenia: dict) -> None:
    assert slovenia["explicit"] == slovenia["planned"]


def test_training_on_every_run_s_dates_is_an_explicit_choice(slovenia: dict) -> None:
    """train.dates: all takes the new date into the grid's scaling and both models: everything reruns."""
    planned = slovenia["all_dates"]
    assert {"grid", "train", "refine"} <= set(planned) and planned["align"] == 14
    assert os.path.exists(slovenia["work"] / "results/models/refined.pt")
