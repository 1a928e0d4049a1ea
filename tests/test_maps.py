"""Tests of cluster colours, the cluster GeoTIFF and the PNG (landtaxa.maps)."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from landtaxa.grid import Grid
from landtaxa.maps import NODATA, pca_colours, plot_cluster_map, write_cluster_map


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


# --- plot_cluster_map ---------------------------------------------------------------------

def test_plot_cluster_map(cluster_map, tmp_path) -> None:
    _, _, img = cluster_map
    out = tmp_path / "png" / "clusters.png"
    plot_cluster_map(img, COLOURS, "K=3", out)
    png = mpimg.imread(out)
    assert png.shape[:2] == (600, 700)  # figsize 7 x 6 in at 100 dpi
    assert png.shape[2] in (3, 4)
    rgb = png[..., :3].reshape(-1, 3)
    # every cluster colour is drawn somewhere (map cells and legend patches)
    for c in COLOURS:
        assert (np.abs(rgb - c).max(axis=1) < 0.01).any(), c
    assert list(out.parent.iterdir()) == [out]  # no temporary left
