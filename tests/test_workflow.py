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
        ("n_clusters=1", "landtaxa: config key n_clusters: 1 is less than the minimum of 2"),
        ("tile_size=abc", "landtaxa: config key tile_size: 'abc' is not of type 'integer'"),
        ("no_such_key=3", "landtaxa: config: unknown key(s) no_such_key; valid keys: images,"),
        ("analysis={restarts: 2, colour: red}", "landtaxa: config key analysis: unknown key(s) colour;"),
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
    # the clear-cut (truth class 7) changes kind on its date far more often than the rest of the region,
    # and is most of what the change maps flag as a lasting change on that date
    truth = load_npz(tmp_path / "results/truth_tiles.npz")["classes"]
    change_index = DemoSpec().n_dates // 2
    for model in ("geo", "refined"):
        clusters = load_npz(tmp_path / f"results/clusters/{model}/k7.npz")
        with rasterio.open(tmp_path / f"results/evolution/{model}/k7/change.tif") as src:
            first_lasting = src.read(1).reshape(-1)[clusters["tile_ids"]]
            changed = src.read(change_index + 1).reshape(-1)[clusters["tile_ids"]]
        cut = truth[clusters["tile_ids"]] == 7
        assert cut.sum() >= 15
        assert changed[cut].mean() >= 0.75 and changed[cut].mean() >= 3 * changed[~cut].mean(), model
        lasting = first_lasting == change_index
        assert lasting[cut].mean() >= 0.4 and lasting[~cut].mean() < 0.02, model


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


# --- the analysis a researcher reads (maps, K, representatives, graph, evolution, report) ---------

TINY_K_SWEEP = TINY + "n_clusters: [5, 4]\n"


@pytest.fixture(scope="module")
def tiny_k_sweep(tiny_run: Path) -> Path:
    """The tiny run with n_clusters a list: only the K=4 clusterings and the K figures run on top."""
    (tiny_run / "tiny_k.yaml").write_text(TINY_K_SWEEP)
    proc = snakemake(tiny_run, "--configfile", str(tiny_run / "tiny_k.yaml"), "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tiny_run


@pytest.mark.slow
@pytest.mark.parametrize("model", ["geo", "refined"])
def test_analysis_maps_and_legend(tiny_run: Path, model: str) -> None:
    import matplotlib.image as mpimg

    from landtaxa.maps import pca_colours

    grid = Grid.load(tiny_run / "results/grid.json")
    clusters = load_npz(tiny_run / f"results/clusters/{model}/k5.npz")
    out = tiny_run / f"results/analysis/{model}/k5"
    colours = pca_colours(clusters["centroids"])
    expected = {i: tuple(int(round(255 * v)) for v in c) for i, c in enumerate(colours)}
    with rasterio.open(out / "clusters.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.crs == rasterio.crs.CRS.from_wkt(grid.crs) and src.transform == grid.tile_transform
        table = {i: src.colormap(1)[i][:3] for i in range(5)}
        np.testing.assert_array_equal(src.read(1).reshape(-1)[clusters["tile_ids"]], clusters["labels"])
    assert table == expected
    # every swatch of the legend is drawn in its colour-table colour
    legend = (mpimg.imread(out / "legend.png")[..., :3] * 255).round().astype(int).reshape(-1, 3)
    present = {tuple(p) for p in np.unique(legend, axis=0)}
    assert set(expected.values()) <= present
    with rasterio.open(out / "series_pca.tif") as src:
        assert src.count == 4 and src.transform == grid.tile_transform
        alpha = src.read(4).reshape(-1)
    assert np.all(alpha[clusters["tile_ids"]] == 255) and alpha.sum() == 255 * len(clusters["tile_ids"])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["geo", "refined"])
def test_analysis_tables(tiny_run: Path, model: str) -> None:
    import pandas as pd

    clusters = load_npz(tiny_run / f"results/clusters/{model}/k5.npz")
    label_of = dict(zip(clusters["tile_ids"].tolist(), clusters["labels"].tolist(), strict=True))
    out = tiny_run / f"results/analysis/{model}/k5"
    edges = pd.read_csv(out / "graph_edges.csv")
    assert len(edges) == 4  # K - 1 edges joining all K clusters: a spanning tree
    assert set(edges["source"]) | set(edges["target"]) == set(range(5))
    assert (edges["distance"] > 0).all()
    reps = pd.read_csv(out / "representatives.csv")
    assert all(label_of[t] == c for t, c in zip(reps["tile_id"], reps["cluster"], strict=True))
    assert set(reps["cluster"]) == set(range(5)) and reps.groupby("cluster").size().max() == 3
    interp = pd.read_csv(out / "interpolation.csv")
    assert list(interp["w"]) == [0, 0.25, 0.5, 0.75, 1]
    assert label_of[interp["tile_id"].iloc[0]] == 0 and label_of[interp["tile_id"].iloc[-1]] == 1
    stab = json.loads((out / "stability.json").read_text())
    ari = np.array(stab["ari"])
    assert ari.shape == (5, 5) and np.allclose(np.diag(ari), 1) and np.allclose(ari, ari.T)
    assert len(stab["jaccard"]) == 5 and all(0 < j <= 1 for j in stab["jaccard"])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["geo", "refined"])
def test_evolution_outputs(tiny_run: Path, model: str) -> None:
    import pandas as pd

    grid = Grid.load(tiny_run / "results/grid.json")
    clusters = load_npz(tiny_run / f"results/clusters/{model}/k5.npz")
    out = tiny_run / f"results/evolution/{model}/k5"
    table = pd.read_parquet(out / "labels.parquet")
    n, dates = len(clusters["tile_ids"]), sorted(table["date"].unique())
    assert len(dates) == 4 and len(table) == n * 4
    assert set(table.columns) >= {"tile_id", "row", "col", "date", "cluster", "nearest", "kind"}
    kind = table.pivot(index="tile_id", columns="date", values="kind").loc[clusters["tile_ids"], dates].to_numpy()
    trans = pd.read_csv(out / "transitions.csv")
    for t in range(3):
        pair = trans[trans["date_from"] == dates[t]]
        rows = pair.groupby("kind_from")["tiles"].sum().reindex(range(5), fill_value=0).to_numpy()
        np.testing.assert_array_equal(rows, np.bincount(kind[:, t], minlength=5))
        stayed = pair[pair["kind_from"] == pair["kind_to"]]["tiles"].sum()
        assert stayed == int((kind[:, t] == kind[:, t + 1]).sum())
    with rasterio.open(out / "change.tif") as src:
        assert src.count == 4 and src.transform == grid.tile_transform and src.nodata == 255
        change = src.read().reshape(4, -1)[:, clusters["tile_ids"]]
    np.testing.assert_array_equal(change[1:].T, kind[:, 1:] != kind[:, :-1])
    for t, date in enumerate(dates):
        with rasterio.open(out / f"{date}.tif") as src:
            np.testing.assert_array_equal(src.read(1).reshape(-1)[clusters["tile_ids"]], kind[:, t])


@pytest.mark.slow
def test_k_choice_and_report(tiny_k_sweep: Path) -> None:
    import pandas as pd

    for model in ("geo", "refined"):
        table = pd.read_csv(tiny_k_sweep / f"results/analysis/{model}/k_choice.csv")
        assert list(table["k"]) == [4, 5]
        assert {"inertia", "silhouette", "geo_silhouette", "calinski_harabasz", "ari", "nmi"} <= set(table.columns)
        assert table["inertia"].iloc[0] > table["inertia"].iloc[1]
        assert table["silhouette_best"].sum() == 1
        assert table.loc[table["silhouette"].idxmax(), "silhouette_best"]
    proc = snakemake(tiny_k_sweep, "--configfile", str(tiny_k_sweep / "tiny_k.yaml"),
                     "--report", "results/report.html", timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (tiny_k_sweep / "results/report.html").read_text()
    assert len(html) > 100_000
    for category in ("Maps", "Choice of K", "Clusters", "Evolution"):
        assert category in html
