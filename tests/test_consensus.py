"""Tests of the consensus of the members' taxonomies (landtaxa.clustering.consensus)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from landtaxa.clustering.consensus import OneHotLabels, agreement, consensus, consensus_step, matched
from landtaxa.params import ClusterParams, schema_defaults

PARAMS = ClusterParams.from_config(schema_defaults())


def noisy_members(truth: np.ndarray, k: int, m: int, noise: float, seed: int = 0) -> np.ndarray:
    """(N, m) labels: the truth renamed by a random permutation per member, a ``noise`` share of tiles relabelled."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(m):
        lab = rng.permutation(k)[truth]
        flip = rng.random(len(truth)) < noise
        lab[flip] = rng.integers(0, k, flip.sum())
        out.append(lab)
    return np.stack(out, axis=1)


def test_consensus_recovers_what_noisy_members_share() -> None:
    truth = np.random.default_rng(1).integers(0, 4, 600)
    members = noisy_members(truth, 4, 5, noise=0.3)
    single = [adjusted_rand_score(truth, members[:, i]) for i in range(5)]
    result = consensus(members, 4, PARAMS)
    assert adjusted_rand_score(truth, result.labels) > max(single) + 0.2  # each member ~0.5, their consensus > 0.9
    assert np.bincount(result.labels).tolist() == sorted(np.bincount(result.labels), reverse=True)  # by size
    # confidence: the share of members agreeing with the consensus; lower where a member was relabelled
    assert result.confidence.min() >= 0 and result.confidence.max() == 1
    assert 0.6 < result.confidence.mean() < 0.9
    assert result.agreement == pytest.approx(np.mean([adjusted_rand_score(members[:, a], members[:, b])
                                                      for a in range(5) for b in range(a + 1, 5)]))


def test_identical_members_give_their_map_with_full_confidence() -> None:
    truth = np.random.default_rng(2).integers(0, 3, 200)
    members = np.stack([truth, (truth + 1) % 3, (truth + 2) % 3], axis=1)  # one map, three namings
    result = consensus(members, 3, PARAMS)
    assert adjusted_rand_score(truth, result.labels) == pytest.approx(1.0)
    assert (result.confidence == 1).all() and result.agreement == pytest.approx(1.0)


def test_one_hot_rows_are_read_in_blocks_and_their_distance_counts_disagreements() -> None:
    labels = np.random.default_rng(3).integers(0, 5, (1000, 4))
    src = OneHotLabels(labels, 5, block_rows=128)
    assert src.shape == (1000, 4, 5) and src.n_blocks() == 8
    seen = np.concatenate([pos for pos, _ in src.blocks()])
    np.testing.assert_array_equal(seen, np.arange(1000))
    rows = src.load().reshape(1000, -1)
    assert (rows.sum(axis=1) == 4).all()
    # squared distance of two one-hot rows = 2 x (members - members that put both tiles in one cluster)
    d = ((rows[0] - rows[1]) ** 2).sum()
    assert d == 2 * (4 - (labels[0] == labels[1]).sum())
    np.testing.assert_array_equal(src.subset(np.array([3, 7])).load(), src.take(np.array([3, 7])))


def test_matched_renames_a_member_to_the_clusters_it_overlaps_most() -> None:
    ref = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    lab = np.array([2, 2, 1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(matched(lab, ref, 3), [0, 0, 2, 1, 1, 2, 2, 2])


def test_agreement_of_one_member_is_undefined() -> None:
    assert np.isnan(agreement(np.zeros((5, 1), np.int64)))


def test_consensus_step_writes_labels_confidence_and_metrics(tmp_path) -> None:
    from series_data import blobs

    from landtaxa.clustering.series import save_series
    from landtaxa.inputs.grid import Grid
    from landtaxa.storage import load_npz, read_json, save_npz

    x, truth = blobs([50, 40, 30], spread=0.5, seed=4, t=3, d=4)
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=80, height=120, tile_size=8,
                bands=[1], dtype="uint16")
    grid.save(tmp_path / "grid.json")
    save_series(tmp_path / "series.npz", x, np.arange(120), ["2023-01-01", "2023-02-01", "2023-03-01"], grid=grid)
    members = noisy_members(truth, 3, 3, noise=0.1, seed=5)
    paths = []
    for i in range(3):
        save_npz(tmp_path / f"m{i}.npz", tile_ids=np.arange(120), labels=members[:, i])
        paths.append(str(tmp_path / f"m{i}.npz"))
    save_npz(tmp_path / "truth.npz", classes=truth)
    out = {name: str(tmp_path / f"c_{name}.npz") for name in ("out", "distances", "confidence")}
    consensus_step(grid=str(tmp_path / "grid.json"), series=str(tmp_path / "series.npz"), members=paths, k=3,
                   model="consensus", metrics=str(tmp_path / "c.json"), truth=str(tmp_path / "truth.npz"),
                   params=PARAMS, **out)
    c, m = load_npz(out["out"]), read_json(tmp_path / "c.json")
    assert adjusted_rand_score(truth, c["labels"]) == pytest.approx(m["ari"]) and m["ari"] > 0.9
    assert c["centroids"].shape == (3, 3, 4) and m["members"] == 3 and 0.5 < m["seed_agreement"] < 1
    conf = load_npz(out["confidence"])
    np.testing.assert_array_equal(conf["tile_ids"], np.arange(120))
    assert m["confidence"] == pytest.approx(float(conf["confidence"].mean()))
    dist = load_npz(out["distances"])["distances"]
    assert dist.shape == (120, 3) and m["inertia"] == pytest.approx(dist[np.arange(120), c["labels"]].sum(), rel=1e-5)
    save_npz(tmp_path / "other.npz", tile_ids=np.arange(1, 121), labels=members[:, 0])
    with pytest.raises(ValueError, match="other.npz: its tiles are not those"):
        consensus_step(grid=str(tmp_path / "grid.json"), series=str(tmp_path / "series.npz"),
                       members=[paths[0], str(tmp_path / "other.npz")], k=3, model="consensus",
                       metrics=str(tmp_path / "c.json"), params=PARAMS, **out)
