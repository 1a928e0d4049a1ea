"""Tests of geographic and cluster-guided triplet sampling (landtaxa.learning.triplets)."""

from __future__ import annotations

import numpy as np
import pytest

from landtaxa.inputs.grid import Grid
from landtaxa.learning.triplets import cluster_triplets, geographic_triplets, triplet_budget

TS = 16
MIN_VALID = 0.5
RADIUS = 20.0


def _grid(n_rows: int, n_cols: int, tile_size: int = TS) -> Grid:
    return Grid(
        crs="EPSG:32630", transform=(10, 0, 500000, 0, -10, 4700000),
        width=n_cols * tile_size, height=n_rows * tile_size, tile_size=tile_size,
        bands=[1, 2, 3], dtype="uint16", scale_min=[0, 0, 0], scale_max=[1000, 1000, 1000],
    )


def _centre_tiles(grid: Grid, pos: np.ndarray) -> np.ndarray:
    """Grid tile id holding the centre of each window with top-left (row, col) = pos[..., 1:]."""
    h = grid.tile_size // 2
    return ((pos[..., 1] + h) // grid.tile_size) * grid.n_cols + (pos[..., 2] + h) // grid.tile_size


@pytest.fixture(scope="module")
def geo_setup():
    grid = _grid(8, 10)
    rng = np.random.default_rng(0)
    fractions = [rng.uniform(0, 1, (grid.n_rows, grid.n_cols)).astype(np.float32) for _ in range(3)]
    fractions[2][:] = 0.0  # a date with no valid tile at all
    fractions[2][0, 0] = 1.0  # ... but one
    trip = geographic_triplets(grid, fractions, 3000, RADIUS, MIN_VALID, np.random.default_rng(1))
    return grid, fractions, trip


def test_geographic_shape_and_dates(geo_setup) -> None:
    grid, fractions, trip = geo_setup
    assert trip.shape == (3000, 3, 3) and trip.dtype == np.int64
    assert set(np.unique(trip[:, :, 0])) <= {0, 1, 2}
    # anchor and neighbour on the same date
    np.testing.assert_array_equal(trip[:, 0, 0], trip[:, 1, 0])
    # the dates with many valid tiles are both used as anchors, about evenly
    counts = np.bincount(trip[:, 0, 0], minlength=3)
    assert counts[0] > 800 and counts[1] > 800


def test_geographic_neighbour_within_radius(geo_setup) -> None:
    _, _, trip = geo_setup
    d = np.hypot(*(trip[:, 1, 1:] - trip[:, 0, 1:]).T)
    assert d.max() <= RADIUS
    # neighbours really spread over the disc, not stuck on the anchor
    assert d.mean() > RADIUS / 3
    assert (d > 0.8 * RADIUS).mean() > 0.1


def test_geographic_distant_far_or_other_date(geo_setup) -> None:
    _, _, trip = geo_setup
    same_date = trip[:, 2, 0] == trip[:, 0, 0]
    d = np.hypot(*(trip[:, 2, 1:] - trip[:, 0, 1:]).T)
    assert np.all(~same_date | (d > RADIUS))
    assert same_date.any() and (~same_date).any()


def test_geographic_windows_inside_grid(geo_setup) -> None:
    grid, _, trip = geo_setup
    rows, cols = trip[:, :, 1], trip[:, :, 2]
    assert rows.min() >= 0 and cols.min() >= 0
    assert rows.max() <= grid.height - grid.tile_size
    assert cols.max() <= grid.width - grid.tile_size
    # windows are not restricted to the tile lattice (random sub-tile offsets)
    assert np.any(rows % grid.tile_size != 0)


def test_geographic_centres_on_valid_tiles(geo_setup) -> None:
    grid, fractions, trip = geo_setup
    tiles = _centre_tiles(grid, trip)
    for j in range(3):  # anchor, neighbour and distant
        frac = np.array([fractions[t].reshape(-1)[i] for t, i in zip(trip[:, j, 0], tiles[:, j], strict=True)])
        assert frac.min() >= MIN_VALID
    # date 2 has a single valid tile: every window of date 2 is centred on it
    on2 = trip[:, :, 0] == 2
    assert on2.any()
    assert np.all(tiles[on2] == 0)


def test_geographic_deterministic(geo_setup) -> None:
    grid, fractions, trip = geo_setup
    again = geographic_triplets(grid, fractions, 3000, RADIUS, MIN_VALID, np.random.default_rng(1))
    np.testing.assert_array_equal(again, trip)
    other = geographic_triplets(grid, fractions, 3000, RADIUS, MIN_VALID, np.random.default_rng(2))
    assert not np.array_equal(other, trip)


def test_geographic_no_valid_tiles() -> None:
    grid = _grid(4, 4)
    fractions = [np.full((4, 4), 0.49, np.float32) for _ in range(2)]
    with pytest.raises(ValueError, match="no date has a valid tile"):
        geographic_triplets(grid, fractions, 10, RADIUS, MIN_VALID, np.random.default_rng(0))


def test_geographic_too_little_data_for_radius() -> None:
    # one valid tile: no distant tile can be farther than the radius on another date
    grid = _grid(4, 4)
    fractions = [np.zeros((4, 4), np.float32)]
    fractions[0][1, 1] = 1.0
    with pytest.raises(ValueError, match="could only sample"):
        geographic_triplets(grid, fractions, 10, 100.0, MIN_VALID, np.random.default_rng(0))


# --- cluster triplets ---------------------------------------------------------------------

N_ROWS, N_COLS, CTS = 12, 12, 8
N_DATES = 4


@pytest.fixture(scope="module")
def cluster_setup():
    grid = _grid(N_ROWS, N_COLS, CTS)
    rng = np.random.default_rng(5)
    # series tiles: all tiles but a few; three clusters of about 60 / 30 / 10 %
    tile_ids = np.sort(rng.choice(grid.n_tiles, 130, replace=False))
    labels = rng.choice(3, size=len(tile_ids), p=[0.6, 0.3, 0.1])
    fractions = [rng.uniform(0, 1, (N_ROWS, N_COLS)).astype(np.float32) for _ in range(N_DATES)]
    fractions = [np.where(f < 0.2, f, 1.0).astype(np.float32) for f in fractions]  # ~20 % invalid
    n = 8000
    trip = cluster_triplets(grid, tile_ids, labels, fractions, n, MIN_VALID, np.random.default_rng(7))
    lab = np.full(grid.n_tiles, -1)
    lab[tile_ids] = labels
    return grid, tile_ids, labels, lab, fractions, n, trip


def test_cluster_positions_on_tile_lattice(cluster_setup) -> None:
    grid, tile_ids, _, _, _, n, trip = cluster_setup
    assert trip.shape == (n, 3, 3) and trip.dtype == np.int64
    assert np.all(trip[:, :, 1:] % grid.tile_size == 0)
    tiles = (trip[:, :, 1] // CTS) * N_COLS + trip[:, :, 2] // CTS
    assert np.isin(tiles, tile_ids).all()


def test_cluster_membership(cluster_setup) -> None:
    _, _, _, lab, _, _, trip = cluster_setup
    tiles = (trip[:, :, 1] // CTS) * N_COLS + trip[:, :, 2] // CTS
    la, ln, ld = lab[tiles[:, 0]], lab[tiles[:, 1]], lab[tiles[:, 2]]
    np.testing.assert_array_equal(la, ln)
    assert np.all(tiles[:, 0] != tiles[:, 1])
    assert np.all(ld != la)
    # all three on the same date
    assert np.all(trip[:, 1, 0] == trip[:, 0, 0]) and np.all(trip[:, 2, 0] == trip[:, 0, 0])


def test_cluster_every_date_used_evenly(cluster_setup) -> None:
    _, _, _, _, _, n, trip = cluster_setup
    counts = np.bincount(trip[:, 0, 0], minlength=N_DATES)
    assert counts.sum() == n
    assert counts.max() - counts.min() <= 1


def test_cluster_invalid_tiles_never_used(cluster_setup) -> None:
    _, _, _, _, fractions, _, trip = cluster_setup
    tiles = (trip[:, :, 1] // CTS) * N_COLS + trip[:, :, 2] // CTS
    frac = np.stack([f.reshape(-1) for f in fractions])[trip[:, :, 0], tiles]
    assert frac.min() >= MIN_VALID


def test_cluster_shares_proportional_to_sizes(cluster_setup) -> None:
    _, tile_ids, labels, lab, fractions, _, trip = cluster_setup
    tiles = (trip[:, :, 1] // CTS) * N_COLS + trip[:, :, 2] // CTS
    for t in range(N_DATES):
        on = trip[:, 0, 0] == t
        ok = fractions[t].reshape(-1)[tile_ids] >= MIN_VALID
        sizes = np.bincount(labels[ok], minlength=3).astype(float)
        m = on.sum()
        # anchors per cluster ~ multinomial(m, sizes / total)
        p = sizes / sizes.sum()
        got = np.bincount(lab[tiles[on, 0]], minlength=3)
        sd = np.sqrt(m * p * (1 - p))
        assert np.all(np.abs(got - m * p) < 5 * sd), (t, got, m * p)
        # distant cluster of anchors of cluster 0 ~ proportional to the other clusters' sizes
        from0 = on & (lab[tiles[:, 0]] == 0)
        d = np.bincount(lab[tiles[from0, 2]], minlength=3)
        assert d[0] == 0
        q = sizes[1] / (sizes[1] + sizes[2])
        k = from0.sum()
        assert abs(d[1] - k * q) < 5 * np.sqrt(k * q * (1 - q)), (t, d, k * q)


def test_cluster_tiles_are_spread(cluster_setup) -> None:
    """Within a cluster, anchors and neighbours are drawn over all its members."""
    _, tile_ids, labels, _, _, _, trip = cluster_setup
    tiles = (trip[:, :, 1] // CTS) * N_COLS + trip[:, :, 2] // CTS
    used = np.unique(tiles[:, :2])
    # almost every series tile that is valid on some date appears as anchor or neighbour
    assert len(used) >= 0.95 * len(tile_ids)


def test_cluster_deterministic(cluster_setup) -> None:
    grid, tile_ids, labels, _, fractions, n, trip = cluster_setup
    again = cluster_triplets(grid, tile_ids, labels, fractions, n, MIN_VALID, np.random.default_rng(7))
    np.testing.assert_array_equal(again, trip)


def test_cluster_skips_dates_without_two_clusters() -> None:
    grid = _grid(4, 4, CTS)
    tile_ids = np.arange(16)
    labels = np.repeat([0, 1], 8)  # rows 0-1: cluster 0, rows 2-3: cluster 1
    fractions = [np.ones((4, 4), np.float32), np.ones((4, 4), np.float32)]
    fractions[1][2:] = 0.0  # date 1 only sees cluster 0
    trip = cluster_triplets(grid, tile_ids, labels, fractions, 100, MIN_VALID, np.random.default_rng(0))
    assert np.all(trip[:, :, 0] == 0)
    assert len(trip) == 50  # date 1's share is not moved to date 0


def test_cluster_single_cluster_raises() -> None:
    grid = _grid(4, 4, CTS)
    fractions = [np.ones((4, 4), np.float32)]
    with pytest.raises(ValueError, match="no date has two clusters"):
        cluster_triplets(grid, np.arange(16), np.zeros(16, int), fractions, 10, MIN_VALID, np.random.default_rng(0))


def test_triplet_budgets_follow_the_region() -> None:
    train = {"per_tile_date": 0.5, "min": 2000, "max": 100000}  # the default: demo, Slovenia, the paper's region
    assert triplet_budget(train, 1024, 8) == 4096 and triplet_budget(train, 110, 36) == 2000
    assert triplet_budget(train, 48400, 20) == 100000 and triplet_budget(train, 2000, 8) == 8000
    refine = {"per_tile_date": 0.1, "min": 800, "max": 100000}
    assert triplet_budget(refine, 1024, 8) == 819 and triplet_budget(refine, 100, 36) == 800
    assert triplet_budget(123, 10**6, 20) == 123
