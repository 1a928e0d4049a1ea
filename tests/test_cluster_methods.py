"""Tests of the clustering methods beyond exact K-means (cluster.method): minibatch, dtw, softdtw."""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from series_data import blobs, match
from sklearn.metrics import adjusted_rand_score

from landtaxa.cli import build_parser
from landtaxa.clusters import CHUNK, METHODS, assign_chunked, kmeans_series

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # tslearn warns about optional h5py
    from tslearn.clustering import TimeSeriesKMeans
    from tslearn.metrics import dtw, soft_dtw

ROOT = Path(__file__).resolve().parents[1]




def _sse(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> float:
    return float(((x.astype(np.float64) - centroids.astype(np.float64)[labels]) ** 2).sum())


def test_minibatch_recovers_clusters_with_exact_inertia() -> None:
    sizes = [4001, 3000, 1500, 506]  # N = 9007: two full chunks of CHUNK rows and a partial one
    x, truth = blobs(sizes, 0.3, 0)
    assert len(x) % CHUNK != 0 and len(x) > 2 * CHUNK
    res = kmeans_series(x, 4, seed=1, n_init=3, method="minibatch", batch_size=512)
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert np.bincount(res.labels).tolist() == sizes  # renumbered by decreasing size
    assert res.centroids.shape == (4, 5, 3) and res.centroids.dtype == np.float32
    assert res.inertia == pytest.approx(_sse(x, res.labels, res.centroids), rel=1e-5)
    # each series carries the label of its nearest centroid
    dist = ((x.reshape(len(x), 1, -1) - res.centroids.reshape(1, 4, -1)) ** 2).sum(axis=2)
    np.testing.assert_array_equal(res.labels, dist.argmin(axis=1))
    # the centres are close to the cluster means (MiniBatchKMeans is approximate, not exact)
    for label in range(4):
        np.testing.assert_allclose(res.centroids[label], x[res.labels == label].mean(axis=0), atol=0.1)


def test_minibatch_same_seed_same_result_and_given_init() -> None:
    x, truth = blobs([300, 200, 100], 0.5, 2)
    a = kmeans_series(x, 3, seed=4, method="minibatch", batch_size=64)
    b = kmeans_series(x, 3, seed=4, method="minibatch", batch_size=64)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia
    c = kmeans_series(x, 3, seed=0, method="minibatch", batch_size=64, init=a.centroids[::-1].copy())
    np.testing.assert_array_equal(c.labels, a.labels)
    assert adjusted_rand_score(truth, c.labels) == 1.0


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000, 1003, 5000])
def test_assign_chunked_any_chunk_size(chunk: int) -> None:
    rng = np.random.default_rng(3)
    flat = rng.normal(0, 1, (1003, 12)).astype(np.float32)
    centers = rng.normal(0, 1, (6, 12)).astype(np.float32)
    labels, inertia = assign_chunked(flat, centers, chunk=chunk)
    dist = ((flat.astype(np.float64)[:, None, :] - centers.astype(np.float64)[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, dist.argmin(axis=1))
    assert inertia == pytest.approx(float(dist.min(axis=1).sum()), rel=1e-6)


def test_inertia_exact_far_from_the_origin() -> None:
    """Embeddings need not be centred: a large common offset must not spoil the inertia (no norm cancellation)."""
    rng = np.random.default_rng(4)
    flat = (1000.0 + rng.normal(0, 0.01, (500, 64))).astype(np.float32)
    centers = np.stack([flat[:250].mean(axis=0), flat[250:].mean(axis=0)])
    labels, inertia = assign_chunked(flat, centers)
    exact = ((flat.astype(np.float64) - centers.astype(np.float64)[labels]) ** 2).sum()
    assert inertia == pytest.approx(float(exact), rel=1e-5)


def test_minibatch_makes_no_copy_of_the_series() -> None:
    """Peak extra memory stays far below a float64 copy (2 x nbytes), even below a float32 one."""
    x, _ = blobs([20_000, 20_000, 20_000], 0.5, 5, t=8, d=16)  # 60,000 x 128 float32: 30.7 MB
    kmeans_series(x[:3000], 3, seed=0, n_init=1, method="minibatch", batch_size=1024)  # warm-up imports
    tracemalloc.start()
    try:
        res = kmeans_series(x, 3, seed=0, n_init=1, method="minibatch", batch_size=1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.bincount(res.labels).tolist() == [20_000] * 3
    assert peak < 0.4 * x.nbytes, f"peak {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.1f} MB series"


@pytest.mark.parametrize("method", ["dtw", "softdtw"])
def test_dtw_methods_agree_with_tslearn(method: str) -> None:
    x, truth = blobs([18, 14, 10], 0.3, 6, t=6, d=2)
    k, n = 3, len(x)
    gamma = 0.5
    ours = kmeans_series(x, k, seed=2, n_init=2, max_iter=10, method=method, gamma=gamma)
    ref = TimeSeriesKMeans(
        n_clusters=k, metric=method, metric_params={"gamma": gamma} if method == "softdtw" else None,
        n_init=2, max_iter=10, random_state=2,
    ).fit(x)
    mapping = match(ours.labels, ref.labels_, k)
    assert adjusted_rand_score(truth, ours.labels) == 1.0
    assert np.bincount(ours.labels).tolist() == [18, 14, 10]
    assert ours.centroids.shape == (k, 6, 2) and ours.centroids.dtype == np.float32
    np.testing.assert_allclose(ours.centroids, ref.cluster_centers_[mapping], atol=1e-5)
    centres = ref.cluster_centers_
    if method == "dtw":  # the sum of squared DTW distances to the own centroid
        expected = sum(dtw(x[i], centres[ref.labels_[i]]) ** 2 for i in range(n))
    else:  # the sum of soft-DTW values to the own centroid
        expected = sum(soft_dtw(x[i], centres[ref.labels_[i]], gamma=gamma) for i in range(n))
    assert ours.inertia == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", ["dtw", "softdtw"])
def test_dtw_methods_refuse_large_n(method: str) -> None:
    x, _ = blobs([16, 15], 0.3, 7)
    with pytest.raises(ValueError, match=rf"'{method}'.*limited to 30 tiles.*N=31"):
        kmeans_series(x, 2, seed=0, method=method, max_dtw_tiles=30)


def test_unknown_method_lists_the_valid_ones() -> None:
    x, _ = blobs([5, 5], 0.3, 8)
    with pytest.raises(ValueError, match="unknown clustering method 'hdbscan'; valid methods: kmeans, minibatch, "
                                         "dtw, softdtw"):
        kmeans_series(x, 2, seed=0, method="hdbscan")


def test_kmeans_method_is_the_default() -> None:
    x, _ = blobs([40, 30, 20], 1.5, 9)
    a = kmeans_series(x, 3, seed=5, n_init=2)
    b = kmeans_series(x, 3, seed=5, n_init=2, method="kmeans", batch_size=7, gamma=3.0, max_dtw_tiles=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia


def _config() -> tuple[dict, dict]:
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    return schema, config


def test_schema_accepts_the_methods_and_rejects_others() -> None:
    schema, config = _config()
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert config["cluster"]["method"] == "kmeans"
    for method in METHODS:
        config["cluster"]["method"] = method
        validator.validate(config)
    config["cluster"]["method"] = "hierarchical"
    with pytest.raises(jsonschema.ValidationError, match="hierarchical"):
        validator.validate(config)
    config["cluster"]["method"] = "kmeans"
    config["cluster"]["linkage"] = "ward"  # additionalProperties stays false
    with pytest.raises(jsonschema.ValidationError, match="linkage"):
        validator.validate(config)
    properties = schema["properties"]["cluster"]["properties"]
    assert properties["method"]["enum"] == list(METHODS)
    for name in ("method", "batch_size", "gamma", "max_dtw_tiles"):
        assert {"type", "description", "default"} <= set(properties[name]), name


def test_cli_and_both_rules_pass_the_options() -> None:
    args = build_parser().parse_args(
        ["clusters", "--grid", "g", "--series", "s", "--k", "4", "--model", "geo", "--out", "o", "--metrics", "m",
         "--method", "softdtw", "--batch-size", "128", "--gamma", "0.1", "--max-dtw-tiles", "99"]
    )
    assert (args.method, args.batch_size, args.gamma, args.max_dtw_tiles) == ("softdtw", 128, 0.1, 99)
    defaults = build_parser().parse_args(
        ["clusters", "--grid", "g", "--series", "s", "--k", "4", "--model", "geo", "--out", "o", "--metrics", "m"]
    )
    assert (defaults.method, defaults.batch_size, defaults.gamma, defaults.max_dtw_tiles) == ("kmeans", 4096, 1.0, 5000)
    rules = (ROOT / "workflow/rules/clusters.smk").read_text()
    for flag in ("--method {params.method}", "--batch-size {params.batch_size}", "--gamma {params.gamma}",
                 "--max-dtw-tiles {params.max_dtw_tiles}"):
        assert rules.count(flag) == 2, flag  # rules clusters and clusters_train
