"""Tests of time-series assembly and gap filling (landtaxa.series)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from landtaxa.series import assemble_series, nearest_valid_index
from landtaxa.storage import load_npz, save_npz


@pytest.fixture(autouse=True)
def _quiet():
    logger = logging.getLogger("landtaxa")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def _v(pattern: str) -> np.ndarray:
    return np.array([ch == "x" for ch in pattern])


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("xxxx", [0, 1, 2, 3]),  # every date valid: itself
        (".x..x.", [1, 1, 1, 4, 4, 4]),
        ("x.x", [0, 0, 2]),  # tie -> earlier
        ("x...x", [0, 0, 0, 4, 4]),  # middle is a tie -> earlier
        ("..x.", [2, 2, 2, 2]),  # leading gap -> first valid
        ("x..", [0, 0, 0]),  # trailing gap -> last valid
        (".x......x", [1, 1, 1, 1, 1, 8, 8, 8, 8]),  # t=4: 3 vs 4 -> 1; t=5: 4 vs 3 -> 8
        ("....", [-1, -1, -1, -1]),  # nothing valid
        ("x", [0]),
        (".", [-1]),
    ],
)
def test_nearest_valid_index_patterns(pattern: str, expected: list[int]) -> None:
    got = nearest_valid_index(_v(pattern)[None])
    assert got.shape == (1, len(pattern))
    assert got[0].tolist() == expected


def _brute(valid: np.ndarray) -> np.ndarray:
    out = np.full(valid.shape, -1)
    for i, row in enumerate(valid):
        idx = np.flatnonzero(row)
        if len(idx) == 0:
            continue
        for t in range(len(row)):
            out[i, t] = idx[np.argmin(np.abs(idx - t))]  # argmin keeps the first (earlier) on ties
    return out


def test_nearest_valid_index_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    valid = rng.uniform(0, 1, (500, 11)) < rng.uniform(0.05, 0.9, (500, 1))
    valid[:5] = False
    np.testing.assert_array_equal(nearest_valid_index(valid), _brute(valid))


def test_nearest_valid_index_rows_independent() -> None:
    valid = np.stack([_v("x..."), _v("...x"), _v("...."), _v(".x.x")])
    np.testing.assert_array_equal(
        nearest_valid_index(valid),
        [[0, 0, 0, 0], [3, 3, 3, 3], [-1, -1, -1, -1], [1, 1, 1, 3]],
    )


DATES = ["2021-01-05", "2021-02-10", "2021-03-17", "2021-04-22"]
PATTERNS = {  # tile id -> validity over the 4 dates
    0: "xxxx",
    1: "x.x.",  # 50 % missing: kept (boundary)
    2: "...x",  # 75 % missing: dropped
    3: "....",  # never valid: dropped
    4: ".xx.",
    5: "x...",  # dropped
    6: ".x.x",
}
D = 3


def _embedding(tile: int, t: int) -> np.ndarray:
    return np.array([tile * 10 + t, -tile, t / 10], np.float32)


@pytest.fixture()
def embedding_files(tmp_path):
    paths = []
    n_tiles = len(PATTERNS)
    for t in range(len(DATES)):
        emb = np.full((n_tiles, D), np.nan, np.float32)
        valid = np.zeros(n_tiles, bool)
        for tile, pat in PATTERNS.items():
            if pat[t] == "x":
                emb[tile] = _embedding(tile, t)
                valid[tile] = True
        path = tmp_path / f"emb_{t}.npz"
        save_npz(path, embeddings=emb, valid=valid, fraction=valid.astype(np.float32))
        paths.append(path)
    return paths


def test_assemble_series(embedding_files, tmp_path) -> None:
    out = tmp_path / "series.npz"
    assemble_series(embedding_files, DATES, out, max_missing=0.5)
    res = load_npz(out)
    assert set(res) == {"series", "tile_ids", "dates", "valid"}
    np.testing.assert_array_equal(res["tile_ids"], [0, 1, 4, 6])
    assert res["tile_ids"].dtype == np.int64
    assert res["dates"].tolist() == DATES
    x = res["series"]
    assert x.shape == (4, 4, D) and x.dtype == np.float32
    assert np.isfinite(x).all()
    # source date per kept tile, filled from the nearest valid date (ties -> earlier)
    sources = {0: [0, 1, 2, 3], 1: [0, 0, 2, 2], 4: [1, 1, 2, 2], 6: [1, 1, 1, 3]}
    for i, tile in enumerate(res["tile_ids"]):
        for t in range(4):
            np.testing.assert_array_equal(x[i, t], _embedding(tile, sources[tile][t]), err_msg=f"{tile},{t}")
    np.testing.assert_array_equal(
        res["valid"], np.stack([_v(PATTERNS[tile]) for tile in (0, 1, 4, 6)])
    )


@pytest.mark.parametrize(
    ("max_missing", "kept"),
    [(0.0, [0]), (0.25, [0]), (0.5, [0, 1, 4, 6]), (0.75, [0, 1, 2, 4, 5, 6]), (1.0, [0, 1, 2, 4, 5, 6])],
)
def test_assemble_series_max_missing(embedding_files, tmp_path, max_missing, kept) -> None:
    out = tmp_path / "series.npz"
    assemble_series(embedding_files, DATES, out, max_missing=max_missing)
    res = load_npz(out)
    np.testing.assert_array_equal(res["tile_ids"], kept)  # a never-valid tile is always dropped
    assert np.isfinite(res["series"]).all()


def test_assemble_series_length_mismatch(embedding_files, tmp_path) -> None:
    with pytest.raises(ValueError, match="4 embedding files for 3 dates"):
        assemble_series(embedding_files, DATES[:3], tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()
