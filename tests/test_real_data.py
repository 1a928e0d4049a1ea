"""The workflow on REAL imagery: a Sentinel-2 NDVI series over Slovenia with land-use labels.

The shared archive stores the 68 dates as one 68-band GeoTIFF (band descriptions = acquisition
times) and the per-date valid-pixel masks likewise. The test unpacks them the way a user's archive
looks (one single-band GeoTIFF and one mask per acquisition, listed in a TSV sheet; the two
acquisitions of 2016-11-19... share a date and become two granules of that date), runs the whole
workflow, and checks the taxonomy against the image's CRS and bounds and the labels.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from landtaxa.grid import Grid

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "slovenia-s2-ndvi" / "geotiff"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")


def unpack(stack: Path, out_dir: Path, dtype: str) -> list[tuple[str, Path]]:
    """Write each band of ``stack`` as its own GeoTIFF; return (acquisition time, path)."""
    out_dir.mkdir(parents=True)
    files = []
    with rasterio.open(stack) as src:
        profile = {**src.profile, "count": 1, "dtype": dtype, "driver": "GTiff"}
        for b, when in enumerate(src.descriptions, start=1):
            path = out_dir / f"{stack.stem.split('_')[0]}_{when[:10]}_{when[11:19].replace(':', '')}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(b).astype(dtype), 1)
            files.append((when, path))
    return files


@pytest.fixture(scope="module")
def slovenia_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("slovenia")
    images = unpack(DATA / "NDVI_68dates.tif", work / "archive" / "ndvi", "float32")
    masks = unpack(DATA / "IS_VALID_68dates.tif", work / "archive" / "valid", "uint8")
    rows, seen = ["date\tgranule\tpath\tmask"], {}
    for (when, img), (_, msk) in zip(images, masks, strict=True):
        day = when[:10]
        seen[day] = seen.get(day, 0) + 1
        rows.append(f"{day}\tpass{seen[day]}\t{img}\t{msk}")
    (work / "images.tsv").write_text("\n".join(rows) + "\n")
    (work / "run.yaml").write_text(json.dumps({
        "images": str(work / "images.tsv"),
        "truth": str(DATA / "LULC.tif"),
        "tile_size": 10,
        "masks": {"invalid": [0]},   # IS_VALID: 1 = clear, 0 = cloud or no data
        "max_missing": 0.8,
        "empty_dates": "keep",       # one acquisition (2015-09-29) is clouded over entirely
        "n_clusters": 4,
        "encoder": {"z_dim": 32},
        "train": {"triplets": 300, "epochs": 2},
        "refine": {"triplets": 340, "epochs": 1},
    }))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "run.yaml"), "--cores", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.mark.slow
def test_real_series_taxonomy(slovenia_run: Path) -> None:
    grid = Grid.load(slovenia_run / "results/grid.json")
    with rasterio.open(DATA / "NDVI_68dates.tif") as src:
        crs, bounds, res = src.crs, src.bounds, src.res
    assert rasterio.crs.CRS.from_wkt(grid.crs) == crs
    # the grid starts at the image's corner, on its pixel lattice, and covers it with whole tiles
    assert grid.bounds[0] == pytest.approx(bounds.left) and grid.bounds[3] == pytest.approx(bounds.top)
    assert grid.bounds[2] >= bounds.right - 1e-6 and grid.bounds[1] <= bounds.bottom + 1e-6
    assert grid.resolution == pytest.approx(res[0])
    assert grid.n_bands == 1  # the encoder's input channels follow the single NDVI band
    with rasterio.open(slovenia_run / "results/maps/refined_clusters.tif") as src:
        assert src.crs == crs
        assert src.transform == grid.tile_transform
        left, bottom, right, top = src.bounds
        assert (left, top) == pytest.approx((bounds.left, bounds.top))
        assert right - bounds.right < grid.tile_metres and bounds.bottom - bottom < grid.tile_metres
        img = src.read(1)
    metrics = json.loads((slovenia_run / "results/metrics.json").read_text())
    print({m: {k: round(v, 3) for k, v in x.items() if k in ("ari", "nmi", "silhouette", "n_tiles")}
           for m, x in metrics.items()})
    for m in metrics.values():
        assert m["n_dates"] == 67 and m["k"] == 4
        assert {"ari", "nmi"} <= set(m) and 0 <= m["nmi"] <= 1
        assert m["n_tiles"] == int((img != 255).sum())
    # the cloudy dates were masked: the two fully clouded acquisitions have no valid tile
    fractions = [np.load(f)["fraction"] for f in sorted((slovenia_run / "results/aligned").glob("*_valid.npz"))]
    assert min(f.max() for f in fractions) == 0.0 and max(f.max() for f in fractions) == 1.0
