"""Tests of the evolution over time (landtaxa.products.evolution): per-date kinds, transitions, changes.

A synthetic "forest, clear-cut, water" series checks that a clear-cut shows as change on its date
and nowhere else; its products are read back, at four dates, and at one and two dates (a single
mosaic is a real archive too). On the demo's own clear-cut, with the trained encoders' series, the
end-to-end test of the default demo (tests/workflow/test_demo.py) checks the change map.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
from series_data import centroids_of

from landtaxa.clustering.series import save_series
from landtaxa.inputs.grid import Grid
from landtaxa.params import EvolutionParams
from landtaxa.products import evolution as ev
from landtaxa.storage import read_json, save_npz


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
    return x, labels, centroids_of(x, labels, 3)


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


def test_first_lasting_change() -> None:
    kind = np.array([[0, 0, 1, 1], [0, 1, 0, 1], [2, 2, 2, 2], [0, 1, 2, 2]])
    np.testing.assert_array_equal(ev.first_lasting_change(kind), [2, 0, 0, 1])
    np.testing.assert_array_equal(ev.first_lasting_change(kind[:, :1]), [0, 0, 0, 0])  # one date: no change


@pytest.mark.parametrize("n_dates", [4, 2, 1])
def test_products_read_back(tmp_path, n_dates: int) -> None:
    """Every file of the evolution step, written from a series of 4, 2 or 1 dates."""
    x, labels, cen = _forest_clearcut_water()
    keep = {4: [0, 1, 2, 3], 2: [1, 2], 1: [3]}[n_dates]  # with 2 dates, the cut falls between them
    x, cen = x[:, keep], cen[:, keep]
    dates = [["2021-01-01", "2021-04-01", "2021-07-01", "2021-10-01"][t] for t in keep]
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=20 * 8, height=20 * 8,
                tile_size=8, bands=[1], dtype="uint16", scale_min=[0], scale_max=[1])
    grid.save(tmp_path / "grid.json")
    tile_ids = np.sort(np.random.default_rng(0).choice(400, 320, replace=False))
    save_series(tmp_path / "series.npz", x, tile_ids, dates, grid)
    save_npz(tmp_path / "k3.npz", labels=labels, centroids=cen, tile_ids=tile_ids, dates=np.array(dates))
    out = tmp_path / "evolution"
    ev.evolution_step(grid=str(tmp_path / "grid.json"), series=str(tmp_path / "series.npz"),
                      clusters=str(tmp_path / "k3.npz"), model="geo", labels=str(out / "labels.parquet"),
                      out_dir=str(out), params=EvolutionParams.from_json("{}"))
    table = pd.read_parquet(out / "labels.parquet")
    assert len(table) == 320 * n_dates and sorted(table["date"].unique()) == dates
    assert set(table.columns) >= {"tile_id", "row", "col", "date", "cluster", "nearest", "kind"}
    kind = table.pivot(index="tile_id", columns="date", values="kind").loc[tile_ids, dates].to_numpy()
    trans = pd.read_csv(out / "transitions.csv")
    assert list(trans.columns) == ["date_from", "date_to", "kind_from", "kind_to", "tiles"]
    assert len(trans) == 9 * (n_dates - 1)
    for t in range(n_dates - 1):
        pair = trans[trans["date_from"] == dates[t]]
        rows = pair.groupby("kind_from")["tiles"].sum().reindex(range(3), fill_value=0).to_numpy()
        np.testing.assert_array_equal(rows, np.bincount(kind[:, t], minlength=3))
        stayed = pair[pair["kind_from"] == pair["kind_to"]]["tiles"].sum()
        assert stayed == int((kind[:, t] == kind[:, t + 1]).sum())
    with rasterio.open(out / "change.tif") as src:
        assert src.count == n_dates and src.transform == grid.tile_transform and src.nodata == 255
        change = src.read().reshape(n_dates, -1)[:, tile_ids]
    np.testing.assert_array_equal(change[1:].T, kind[:, 1:] != kind[:, :-1])
    np.testing.assert_array_equal(change[0], ev.first_lasting_change(kind))
    for t, date in enumerate(dates):
        with rasterio.open(out / f"{date}.tif") as src:
            np.testing.assert_array_equal(src.read(1).reshape(-1)[tile_ids], kind[:, t])
    summary = read_json(out / "summary.json")
    assert summary["dates"] == dates and len(summary["changed_tiles"]) == n_dates - 1
    if n_dates >= 2:  # the clear-cut is seen changing, and the change lasts
        assert summary["changed_tiles"][-1 if n_dates == 2 else 1] == 20
        assert summary["lasting_changes"][-1 if n_dates == 2 else 1] == 20
    else:
        assert summary["tiles_ever_changed"] == 0 and "one date" in summary["note"]
    assert (out / "evolution.png").stat().st_size > 1000 and (out / "transitions.png").stat().st_size > 1000


def _date_groups_pairwise(x_t: np.ndarray, c_t: np.ndarray, labels: np.ndarray, merge_overlap: float) -> np.ndarray:
    """The groups as first written (every pair of clusters tested on its members): the reference."""
    k = len(c_t)
    parent = np.arange(k)

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    d_own = np.linalg.norm(x_t - c_t[labels], axis=1)
    for a in range(k):
        for b in range(a + 1, k):
            members = (labels == a) | (labels == b)
            if not members.any():
                continue
            other = np.where(labels[members] == a, b, a)
            d_other = np.linalg.norm(x_t[members] - c_t[other], axis=1)
            if np.mean(d_other < d_own[members]) >= merge_overlap:
                ra, rb = root(a), root(b)
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(a) for a in range(k)])


@pytest.mark.parametrize("seed", range(5))
def test_groups_from_counts_equal_the_pairwise_test(seed: int) -> None:
    """Counting, block by block, the members nearer another slice gives exactly the pairwise groups."""
    rng = np.random.default_rng(seed)
    k, d = 7, 16
    cen = rng.normal(0, 1, (k, d)).astype(np.float32)
    cen[3] = cen[1] + 0.05  # near-duplicate slices: merged
    labels = rng.integers(0, k, 3000)
    labels[labels == 6] = 5  # an empty cluster
    x = (cen[labels] + rng.normal(0, 0.6, (3000, d))).astype(np.float32)
    for overlap in (0.1, 0.25, 0.5):
        np.testing.assert_array_equal(ev.date_groups(x, cen, labels, overlap),
                                      _date_groups_pairwise(x, cen, labels, overlap))
    counts = sum(ev.closer_counts(x[s:s + 700], cen, labels[s:s + 700]) for s in range(0, 3000, 700))
    np.testing.assert_array_equal(counts, ev.closer_counts(x, cen, labels))


def test_per_date_labels_of_a_store_equal_those_of_the_array(tmp_path) -> None:
    from landtaxa.clustering.series import Series

    x, labels, cen = _forest_clearcut_water(3)
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=8, tile_size=1,
                bands=[1], dtype="uint16")
    save_series(tmp_path / "s.npz", x, np.arange(320), ["2021-01-01", "2021-04-01", "2021-07-01", "2021-10-01"],
                grid)
    store = Series(tmp_path / "s.npz", block_bytes=50 * 4 * 2 * 4)  # blocks of 50 tiles
    assert store.n_blocks() > 5
    for got, want in zip(ev.per_date_labels(store, cen, labels), ev.per_date_labels(x, cen, labels), strict=True):
        np.testing.assert_array_equal(got, want)


def test_labels_table_in_row_groups_reads_back(tmp_path) -> None:
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=30, height=10, tile_size=1,
                bands=[1], dtype="uint16")
    rng = np.random.default_rng(2)
    tile_ids = np.sort(rng.choice(300, 250, replace=False))
    kind = rng.integers(0, 5, (250, 3))
    nearest = rng.integers(0, 5, (250, 3))
    labels = rng.integers(0, 5, 250)
    dates = ["2021-01-01", "2021-02-01", "2021-03-01"]
    ev.write_labels_table(str(tmp_path / "l.parquet"), grid, tile_ids, labels, nearest, kind, dates, rows_per_group=60)
    table = pd.read_parquet(tmp_path / "l.parquet")
    assert len(table) == 750 and list(table.columns) == ["tile_id", "row", "col", "date", "cluster", "nearest", "kind"]
    pivot = table.pivot(index="tile_id", columns="date", values="kind").loc[tile_ids, dates].to_numpy()
    np.testing.assert_array_equal(pivot, kind)
    got, got_dates = ev.read_kinds(str(tmp_path / "l.parquet"), tile_ids[::-1])
    assert got_dates == dates
    np.testing.assert_array_equal(got, kind[::-1])
    with pytest.raises(KeyError, match="tiles missing"):
        ev.read_kinds(str(tmp_path / "l.parquet"), np.array([tile_ids[0], 999]))
