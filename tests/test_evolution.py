"""Tests of the evolution over time (landtaxa.evolution): per-date kinds, transitions, changes.

A synthetic "forest, clear-cut, water" series checks that a clear-cut shows as change on its date
and nowhere else. On the demo's own clear-cut, with the trained encoders' series, the end-to-end
test of the default demo (tests/test_workflow.py) checks the change map.
"""

from __future__ import annotations

import numpy as np
from series_data import centroids_of

from landtaxa import evolution as ev


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
