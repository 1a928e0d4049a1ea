"""Tests of cluster colours, the cluster GeoTIFF and the PNG (landtaxa.products.maps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.crs import CRS

from landtaxa.inputs.grid import Grid
from landtaxa.products.maps import map_step
from landtaxa.products.rasters import NODATA, pca_colours, principal_components, write_cluster_map
from landtaxa.storage import save_npz


def _grid() -> Grid:
    return Grid(
        crs="EPSG:32630", transform=(10, 0, 500000, 0, -10, 4700000), width=64, height=48, tile_size=16,
        bands=[1, 2, 3], dtype="uint16", scale_min=[0, 0, 0], scale_max=[1000, 1000, 1000],
    )


# --- pca_colours --------------------------------------------------------------------------

def test_pca_colours_range_and_similarity() -> None:
    rng = np.random.default_rng(0)
    cent = rng.normal(0, 1, (7, 4, 3))
    cent[6] = cent[0] + 1e-3 * rng.normal(0, 1, (4, 3))  # near duplicate of cluster 0
    col = pca_colours(cent)
    assert col.shape == (7, 3)
    assert col.min() >= 0.0 and col.max() <= 1.0
    assert np.abs(col[6] - col[0]).max() < 0.01
    # distinct clusters get distinct colours, and the colours use the available range
    dist = np.linalg.norm(col[:6, None] - col[None, :6], axis=-1)
    assert dist[np.triu_indices(6, 1)].min() > 0.1
    assert np.ptp(col, axis=0).max() == pytest.approx(0.8)
    np.testing.assert_array_equal(pca_colours(cent), col)  # deterministic


@pytest.mark.parametrize("shape", [(7, 8 * 512), (10, 40), (3, 8), (2, 5)])
def test_principal_components_are_scikit_learns(shape: tuple[int, int]) -> None:
    """The colours' components, computed without scikit-learn, equal its PCA's (values and signs)."""
    from sklearn.decomposition import PCA

    flat = np.random.default_rng(sum(shape)).normal(size=shape) * np.linspace(3, 1, shape[1])
    n_comp = min(3, *shape)
    np.testing.assert_allclose(principal_components(flat, n_comp),
                               PCA(n_components=n_comp, random_state=0).fit_transform(flat), atol=1e-9)


def test_pca_colours_near_duplicate_in_low_rank_set() -> None:
    """Three behaviours, four clusters: two nearly identical clusters must not get far colours."""
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, (3, 4, 3))
    cent = np.concatenate([base, base[:1] + 1e-3 * rng.normal(0, 1, (1, 4, 3))])
    col = pca_colours(cent)
    assert np.abs(col[3] - col[0]).max() < 0.01
    assert np.linalg.norm(col[1] - col[0]) > 0.2 and np.linalg.norm(col[2] - col[1]) > 0.2


def test_pca_colours_collinear_centroids_evenly_spaced() -> None:
    rng = np.random.default_rng(2)
    base, direction = rng.normal(0, 1, (2, 5, 2))
    cent = np.stack([base + i * direction for i in range(6)])
    col = pca_colours(cent)
    steps = np.linalg.norm(np.diff(col, axis=0), axis=1)
    np.testing.assert_allclose(steps, 0.8 / 5, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(col[-1] - col[0]), 0.8, rtol=1e-6)


@pytest.mark.parametrize("k", [2, 3])
def test_pca_colours_few_clusters(k: int) -> None:
    cent = np.random.default_rng(3).normal(0, 1, (k, 2, 2)).astype(np.float32)
    col = pca_colours(cent)
    assert col.shape == (k, 3)
    assert col.min() >= 0.15 - 1e-12 and col.max() <= 0.95 + 1e-12
    dist = np.linalg.norm(col[:, None] - col[None], axis=-1)
    assert dist.max() >= 0.8 - 1e-9  # the two ends of the widest component
    assert dist[np.triu_indices(k, 1)].min() > 0.2


# --- write_cluster_map --------------------------------------------------------------------

TILE_IDS = np.array([0, 1, 2, 5, 6, 11])
LABELS = np.array([0, 1, 2, 0, 1, 2])
COLOURS = np.array([[0.15, 0.5, 0.95], [0.9, 0.2, 0.3], [0.33, 0.66, 0.1]])


@pytest.fixture()
def cluster_map(tmp_path):
    grid = _grid()
    out = tmp_path / "maps" / "clusters.tif"
    img = write_cluster_map(grid, TILE_IDS, LABELS, COLOURS, out)
    return grid, out, img


def test_write_cluster_map_content(cluster_map) -> None:
    grid, out, img = cluster_map
    expected = np.full((3, 4), NODATA, np.uint8)
    expected.flat[TILE_IDS] = LABELS
    np.testing.assert_array_equal(img, expected)
    with rasterio.open(out) as src:
        assert src.driver == "GTiff"
        assert (src.width, src.height, src.count) == (4, 3, 1)
        assert src.dtypes[0] == "uint8"
        assert src.crs == CRS.from_user_input(grid.crs)
        assert src.transform.almost_equals(grid.tile_transform)
        assert tuple(src.transform)[:6] == (160.0, 0.0, 500000.0, 0.0, -160.0, 4700000.0)
        assert src.nodata == NODATA
        data = src.read(1)
        np.testing.assert_array_equal(data, expected)
        assert (src.read_masks(1) == 0).sum() == 12 - len(TILE_IDS)
        # the centre of tile 6 (row 1, col 2) on the ground falls in the map pixel of label 1
        x, y = grid.affine @ (2 * 16 + 8, 1 * 16 + 8)
        assert next(src.sample([(x, y)]))[0] == 1


def test_write_cluster_map_is_cog_with_colour_table(cluster_map) -> None:
    _, out, _ = cluster_map
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.compression is not None and src.compression.name.upper() == "DEFLATE"
        cmap = src.colormap(1)
    for i, c in enumerate(COLOURS):
        assert cmap[i] == (*(int(round(255 * v)) for v in c), 255)
    assert cmap[NODATA][3] == 0  # nodata is transparent
    assert list(out.parent.iterdir()) == [out]  # no temporary left


def test_write_cluster_map_too_many_clusters(tmp_path) -> None:
    grid = _grid()
    with pytest.raises(ValueError, match="at most 255 clusters"):
        write_cluster_map(grid, np.array([0]), np.array([255]), np.zeros((256, 3)), tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_map_step_writes_map_picture_and_legend_in_one_colour_table(tmp_path) -> None:
    import matplotlib.image as mpimg

    grid = _grid()
    grid.save(tmp_path / "grid.json")
    cen = np.random.default_rng(5).normal(0, 1, (3, 2, 4)).astype(np.float32)
    save_npz(tmp_path / "k3.npz", labels=LABELS, centroids=cen, tile_ids=TILE_IDS, dates=np.array(["a", "b"]))
    kind = np.stack([LABELS, np.where(TILE_IDS == 11, 0, LABELS)], axis=1)  # tile 11 changes kind on date b
    pd.DataFrame({"tile_id": np.repeat(TILE_IDS, 2), "date": np.tile(["2020-01-01", "2020-06-01"], 6),
                  "kind": kind.reshape(-1)}).to_parquet(tmp_path / "labels.parquet")
    out = {name: tmp_path / "maps" / f"x_{name}.{ext}" for name, ext in (("tif", "tif"), ("png", "png"),
                                                                       ("legend", "png"))}
    map_step(grid=str(tmp_path / "grid.json"), clusters=str(tmp_path / "k3.npz"),
             kinds=str(tmp_path / "labels.parquet"), model="geo", **{k: str(v) for k, v in out.items()})
    expected = {i: tuple(int(round(255 * v)) for v in c) for i, c in enumerate(pca_colours(cen))}
    with rasterio.open(out["tif"]) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert {i: src.colormap(1)[i][:3] for i in range(3)} == expected
        np.testing.assert_array_equal(src.read(1).reshape(-1)[TILE_IDS], LABELS)
    # every swatch of the legend is drawn in its colour-table colour
    legend = (mpimg.imread(out["legend"])[..., :3] * 255).round().astype(int).reshape(-1, 3)
    assert set(expected.values()) <= {tuple(p) for p in np.unique(legend, axis=0)}
    assert out["png"].stat().st_size > 1000
    # the class names, from the data, beside the map for GDAL and QGIS
    aux = (tmp_path / "maps" / "x_tif.tif.aux.xml").read_text()
    qml = (tmp_path / "maps" / "x_tif.qml").read_text()
    for name in ("c0: 2 tiles, 0.0512 km2, 33%, stable", "c2: 2 tiles, 0.0512 km2, 33%, changes on 2020-06-01 (50%)"):
        assert name in aux and name in qml


def test_pca_colours_run_without_loading_scikit_learn() -> None:
    """Every map, viewer, kinds and evolution job computes its colours: scikit-learn (about 1 s to load) stays out."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from landtaxa.products.rasters import pca_colours\n"
            "pca_colours(np.random.default_rng(0).normal(size=(7, 8, 16))); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
