"""End-to-end tests: the whole Snakemake DAG on a tiny demo config in a temporary folder.

These check the contracted outputs by value (metrics, CRS, geotransform, shapes, labels),
that a finished run is fully cached, and that bad configs stop before any job runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from configs import TINY

from landtaxa.demo import DemoSpec
from landtaxa.grid import Grid
from landtaxa.storage import load_npz

REPO = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = {"k", "n_tiles", "n_dates", "inertia", "silhouette", "geo_silhouette", "calinski_harabasz"}


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("tiny run")  # a space in the path on purpose
    (work / "tiny.yaml").write_text(TINY)
    proc = snakemake(work, "--configfile", str(work / "tiny.yaml"), "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.mark.slow
def test_metrics_contract(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "results/metrics.json").read_text())
    assert set(metrics) == {"geo", "refined"}
    for model, m in metrics.items():
        assert CONTRACT_KEYS | {"ari", "nmi"} <= set(m)
        series = load_npz(tiny_run / f"results/series/{model}.npz")
        n, t, d = series["series"].shape
        assert (m["k"], m["n_tiles"], m["n_dates"], d) == (5, n, 4, 32)
        assert -1 <= m["silhouette"] <= 1 and -1 <= m["geo_silhouette"] <= 1
        assert m["inertia"] > 0 and m["calinski_harabasz"] > 0
        assert 0 <= m["nmi"] <= 1 and -1 <= m["ari"] <= 1
        assert sum(m["cluster_sizes"]) == n
    # even this tiny, barely trained run separates the demo's land kinds clearly
    assert metrics["geo"]["ari"] > 0.3


@pytest.mark.slow
def test_grid_covers_demo_region(tiny_run: Path) -> None:
    grid = Grid.load(tiny_run / "results/grid.json")
    spec = DemoSpec(size=160)
    x0, y0 = spec.origin
    assert rasterio.crs.CRS.from_wkt(grid.crs) == rasterio.crs.CRS.from_user_input(spec.crs)
    assert grid.affine == Affine(spec.pixel_size, 0, x0, 0, -spec.pixel_size, y0)
    assert (grid.width, grid.height, grid.n_rows, grid.n_cols) == (160, 160, 10, 10)
    for date_tif in sorted((tiny_run / "results/aligned").glob("*.tif")):
        with rasterio.open(date_tif) as src:
            assert (src.width, src.height, src.count) == (160, 160, 4)
            assert src.transform == grid.affine


@pytest.mark.slow
@pytest.mark.parametrize("model", ["geo", "refined"])
def test_cluster_maps(tiny_run: Path, model: str) -> None:
    grid = Grid.load(tiny_run / "results/grid.json")
    clusters = load_npz(tiny_run / f"results/clusters/{model}/k5.npz")
    with rasterio.open(tiny_run / f"results/maps/{model}_clusters.tif") as src:
        assert src.crs == rasterio.crs.CRS.from_wkt(grid.crs)
        assert src.transform == grid.tile_transform
        assert (src.height, src.width) == (grid.n_rows, grid.n_cols)
        assert src.nodata == 255
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        colours = src.colormap(1)
        img = src.read(1)
    flat = img.reshape(-1)
    np.testing.assert_array_equal(flat[clusters["tile_ids"]], clusters["labels"])
    missing = np.setdiff1d(np.arange(grid.n_tiles), clusters["tile_ids"])
    assert np.all(flat[missing] == 255)
    assert len(missing) > 0  # the demo's nodata corners leave tiles without data
    assert {int(v) for v in np.unique(clusters["labels"])} <= set(colours)
    assert (tiny_run / f"results/maps/{model}_clusters.png").stat().st_size > 1000


@pytest.mark.slow
def test_embeddings_and_models(tiny_run: Path) -> None:
    grid = Grid.load(tiny_run / "results/grid.json")
    for model in ("geo", "refined"):
        payload = torch.load(tiny_run / f"results/models/{model}.pt", weights_only=True)
        assert payload["meta"]["z_dim"] == 32 and payload["meta"]["in_channels"] == 4
        files = sorted((tiny_run / f"results/embeddings/{model}").glob("*.npz"))
        assert len(files) == 4
        for f in files:
            e = load_npz(f)
            assert e["embeddings"].shape == (grid.n_tiles, 32)
            assert np.isfinite(e["embeddings"][e["valid"]]).all()
            assert np.isnan(e["embeddings"][~e["valid"]]).all()
    geo = load_npz(tiny_run / "results/series/geo.npz")["series"]
    refined = load_npz(tiny_run / "results/series/refined.npz")["series"]
    assert geo.shape == refined.shape and not np.allclose(geo, refined)


@pytest.mark.slow
def test_finished_run_is_cached(tiny_run: Path) -> None:
    proc = snakemake(tiny_run, "--configfile", str(tiny_run / "tiny.yaml"), "--cores", "1", "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("n_clusters=1", "n_clusters"),
        ("tile_size=abc", "tile_size"),
        ("no_such_key=3", "no_such_key"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path: Path, override: str, message: str) -> None:
    proc = snakemake(tmp_path, "--cores", "1", "--config", override, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "results").exists()


def test_missing_image_folder_is_reported(tmp_path: Path) -> None:
    proc = snakemake(tmp_path, "--cores", "1", "--config", f"images={tmp_path / 'nowhere'}", timeout=120)
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr and "no raster files found" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_default_demo_recovers_truth(tmp_path: Path) -> None:
    """The README's quick start: `snakemake --cores 2` with no config, on the default demo."""
    proc = snakemake(tmp_path, "--cores", "2", timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((tmp_path / "results/metrics.json").read_text())
    assert metrics["refined"]["k"] == 7 and metrics["refined"]["n_dates"] == 8
    assert metrics["refined"]["ari"] >= 0.6, metrics
    for model in ("geo", "refined"):
        assert (tmp_path / f"results/maps/{model}_clusters.tif").exists()


def test_missing_truth_is_reported(tmp_path: Path) -> None:
    proc = snakemake(tmp_path, "--cores", "1", "-n", "--config", f"truth={tmp_path / 'labels.tif'}", timeout=120)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "labels.tif" in out and "truth raster not found" in out


@pytest.mark.slow
def test_coverage_map(tiny_run: Path) -> None:
    grid = Grid.load(tiny_run / "results/grid.json")
    with rasterio.open(tiny_run / "results/maps/coverage.tif") as src:
        assert src.transform == grid.tile_transform and src.crs == rasterio.crs.CRS.from_wkt(grid.crs)
        counts = src.read(1)
    valid = np.stack([load_npz(f)["fraction"].reshape(-1) >= 0.5
                      for f in sorted((tiny_run / "results/aligned").glob("*_valid.npz"))])
    np.testing.assert_array_equal(counts.reshape(-1), valid.sum(axis=0))
    assert counts.max() == 4 and counts.min() == 0  # the demo's nodata corners are never valid
