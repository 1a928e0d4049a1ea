"""Tests of the figures (landtaxa.products.figures): colours as in the maps, and drawing at any number of dates."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from landtaxa.products.figures import label_rgba, plot_cluster_map, plot_evolution, plot_legend, plot_transitions
from landtaxa.products.rasters import NODATA

TILE_IDS = np.array([0, 1, 2, 5, 6, 11])
LABELS = np.array([0, 1, 2, 0, 1, 2])
COLOURS = np.array([[0.15, 0.5, 0.95], [0.9, 0.2, 0.3], [0.33, 0.66, 0.1]])


def test_label_rgba_paints_clusters_and_leaves_nodata_transparent() -> None:
    img = np.array([[0, NODATA], [2, 1]], np.uint8)
    rgba = label_rgba(img, COLOURS)
    np.testing.assert_array_equal(rgba[0, 0], [*COLOURS[0], 1.0])
    np.testing.assert_array_equal(rgba[1, 1], [*COLOURS[1], 1.0])
    assert rgba[0, 1, 3] == 0.0


def test_plot_cluster_map(tmp_path) -> None:
    img = np.full((3, 4), NODATA, np.uint8)
    img.flat[TILE_IDS] = LABELS
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


def test_legend_swatches_in_map_colours(tmp_path) -> None:
    out = tmp_path / "legend.png"
    plot_legend(COLOURS, ["c0: 3 tiles", "c1: 2 tiles", "c2: 1 tile, stable"], "K=3", out)
    legend = (mpimg.imread(out)[..., :3] * 255).reshape(-1, 3)
    for c in COLOURS:  # every swatch is drawn in its colour (to within 8-bit rounding)
        assert (np.abs(legend - 255 * c).max(axis=1) <= 1).sum() > 20, c


@pytest.mark.parametrize("n_dates", [1, 2, 3])
def test_evolution_figures_draw_at_any_number_of_dates(tmp_path, n_dates: int) -> None:
    """One date (a single mosaic) has no transitions and no change: the figures say so, and still draw."""
    maps = np.stack([np.array([[0, 1], [2, NODATA]], np.uint8)] * n_dates)
    change = np.zeros((n_dates, 2, 2), np.uint8)
    dates = [f"2024-0{t + 1}-01" for t in range(n_dates)]
    plot_evolution(maps, change, COLOURS, dates, "evolution", tmp_path / "evolution.png")
    trans = np.zeros((n_dates - 1, 3, 3), np.int64)
    plot_transitions(trans, COLOURS, dates, "transitions", tmp_path / "transitions.png")
    for name in ("evolution.png", "transitions.png"):
        assert mpimg.imread(tmp_path / name).shape[0] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evolution.png", "transitions.png"]
