"""Tests of the evolution over time (landtaxa.evolution): per-date kinds, transitions, changes.

A synthetic "forest, clear-cut, water" series checks that a clear-cut shows as change on its date
and nowhere else; the demo generator with a cheap embedding-free series (band means and spreads
per tile and date) checks the same on the demo's own clear-cut zone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from landtaxa import evolution as ev
from landtaxa.clusters import kmeans_series
from landtaxa.demo import CLEARCUT, DemoSpec, make_demo, truth_path


def _forest_clearcut_water(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 forest tiles, 20 clear-cut tiles (forest until date 2, then bare), 100 water tiles; 4 dates."""
    rng = np.random.default_rng(seed)
    t = 4
    forest, bare, water = np.array([0.0, 0.0]), np.array([5.0, 5.0]), np.array([-5.0, 5.0])
    means = np.zeros((3, t, 2))
    means[0], means[2] = forest, water
    means[1, :2], means[1, 2:] = forest, bare
    labels = np.repeat([0, 1, 2], [200, 20, 100])
    x = (means[labels] + 0.3 * rng.normal(0, 1, (len(labels), t, 2))).astype(np.float32)
    centroids = np.stack([x[labels == c].mean(0) for c in range(3)])
    return x, labels, centroids


def test_clear_cut_changes_on_its_date_and_nothing_else_does() -> None:
    x, labels, cen = _forest_clearcut_water()
    cluster, kind = ev.per_date_labels(x, cen, labels, merge_overlap=0.25)
    assert kind.shape == cluster.shape == (320, 4)
    # before the cut the clear-cut cannot be told from the forest: both are the forest's kind
    assert np.all(kind[labels == 1, :2] == 0) and np.all(kind[labels == 1, 2:] == 1)
    assert np.all(kind[labels == 0] == 0) and np.all(kind[labels == 2] == 2)
    changed = ev.changes(kind)
    assert changed.shape == (320, 3)
    np.testing.assert_array_equal(np.flatnonzero(changed[:, 1]), np.flatnonzero(labels == 1))
    assert not changed[:, [0, 2]].any()
    # the nearest slice alone flips between forest and clear-cut before the cut: spurious changes
    assert ev.changes(cluster)[labels == 0].any()


def test_date_groups_merge_only_indistinguishable_clusters() -> None:
    x, labels, cen = _forest_clearcut_water()
    np.testing.assert_array_equal(ev.date_groups(x[:, 0], cen[:, 0], labels, 0.25), [0, 0, 2])
    np.testing.assert_array_equal(ev.date_groups(x[:, 3], cen[:, 3], labels, 0.25), [0, 1, 2])
    # with an overlap no pair can reach, nothing is merged
    np.testing.assert_array_equal(ev.date_groups(x[:, 0], cen[:, 0], labels, 0.6), [0, 1, 2])


def test_transition_rows_sum_to_tile_counts() -> None:
    rng = np.random.default_rng(1)
    kind = rng.integers(0, 4, (500, 5))
    trans = ev.transitions(kind, 4)
    assert trans.shape == (4, 4, 4)
    for t in range(4):
        np.testing.assert_array_equal(trans[t].sum(1), np.bincount(kind[:, t], minlength=4))
        np.testing.assert_array_equal(trans[t].sum(0), np.bincount(kind[:, t + 1], minlength=4))
        assert np.trace(trans[t]) == int((kind[:, t] == kind[:, t + 1]).sum())


def _band_series(demo_dir: Path, spec: DemoSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, 2*bands) per-tile band means and standard deviations of the demo's first granule
    mosaic (all granules pasted), and each tile's majority truth class; tiles with nodata dropped."""
    ts = 16
    n = spec.size // ts
    with rasterio.open(truth_path(demo_dir)) as src:
        truth = src.read(1)
    blocks = truth.reshape(n, ts, n, ts).transpose(0, 2, 1, 3).reshape(n * n, -1)
    cls = np.array([np.bincount(b, minlength=256).argmax() for b in blocks])
    feats = []
    for date in sorted({p.name.split("_")[0] for p in (demo_dir / "images").glob("*.tif")}):
        mosaic = np.zeros((spec.bands, spec.size, spec.size), np.float32)
        for path in sorted((demo_dir / "images").glob(f"{date}_*.tif")):
            with rasterio.open(path) as src:
                r, c = src.index(src.bounds.left + 1, src.bounds.top - 1, op=int)
                r0, c0 = rasterio.transform.rowcol(_region_transform(spec), src.bounds.left + 1,
                                                   src.bounds.top - 1)
                data = src.read().astype(np.float32) / 10000
                part = mosaic[:, r0:r0 + src.height, c0:c0 + src.width]
                part[data > 0] = data[data > 0]
        tiles = mosaic.reshape(spec.bands, n, ts, n, ts).transpose(1, 3, 0, 2, 4).reshape(n * n, spec.bands, -1)
        feats.append(np.concatenate([tiles.mean(-1), tiles.std(-1)], axis=1))
    x = np.stack(feats, axis=1)
    keep = (cls != 255) & (x.min(axis=(1, 2)) > 0)
    return x[keep], cls[keep]


def _region_transform(spec: DemoSpec):
    from affine import Affine

    return Affine(spec.pixel_size, 0, spec.origin[0], 0, -spec.pixel_size, spec.origin[1])


@pytest.mark.parametrize("change_date", [2, 3])
def test_demo_clear_cut_shows_as_change_on_its_date(tmp_path: Path, change_date: int) -> None:
    """The demo's own clear-cut zone (truth class 7) changes kind on ``change_date``, few other tiles do.

    The series here are band statistics, not the encoder's embeddings: this proves the per-date
    kinds find the demo's clear-cut when the series separate it, not that a trained encoder does.
    """
    spec = DemoSpec(size=256, n_dates=5, change_date=change_date)
    make_demo(spec, tmp_path)
    x, cls = _band_series(tmp_path, spec)
    x = (x - x.mean((0, 1))) / x.std((0, 1))
    result = kmeans_series(x, 7, seed=0, n_init=5)
    _, kind = ev.per_date_labels(x, result.centroids, result.labels)
    changed = ev.changes(kind)
    cut = cls == CLEARCUT
    assert cut.sum() >= 4
    on_date = changed[:, change_date - 1]
    assert on_date[cut].mean() >= 0.75, (on_date[cut], kind[cut])
    # few others: other tiles changing on that date are a small share of the region
    assert on_date[~cut].mean() < 0.05
