"""Tests of time-series assembly and gap filling (landtaxa.clustering.series)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from landtaxa.clustering.series import Series, assemble_series, nearest_valid_index
from landtaxa.inputs.grid import Grid
from landtaxa.learning.cube import embedding_store
from landtaxa.storage import load_npz


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


ROW = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=len(PATTERNS), height=1,
           tile_size=1, bands=[1], dtype="uint16")  # the tiles of PATTERNS in one row


def write_dates(folder, grid: Grid, patterns: dict[int, str], dates: list[str], embedding=_embedding,
                dtype: str = "float32") -> list:
    """One embedding store per date: tile i holds embedding(i, t) on the dates its pattern marks valid."""
    paths = []
    for t, date in enumerate(dates):
        valid = np.zeros(grid.n_tiles, bool)
        ids = [tile for tile, pat in sorted(patterns.items()) if pat[t] == "x"]
        valid[ids] = True
        path = folder / f"{date}.zarr"
        with embedding_store(path, grid, D, valid, dtype) as store:
            if ids:
                store.put(np.array(ids), np.stack([embedding(tile, t) for tile in ids]))
        paths.append(path)
    return paths


@pytest.fixture()
def embedding_files(tmp_path):
    return write_dates(tmp_path / "embeddings", ROW, PATTERNS, DATES)


def test_assemble_series(embedding_files, tmp_path) -> None:
    out = tmp_path / "series.npz"
    assemble_series(embedding_files, DATES, out, max_missing=0.5)
    res = load_npz(out)
    assert set(res) == {"tile_ids", "dates", "valid", "source", "cube"}
    np.testing.assert_array_equal(res["tile_ids"], [0, 1, 4, 6])
    assert res["tile_ids"].dtype == np.int64
    assert res["dates"].tolist() == DATES
    x = Series(out).load()
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
    assert np.isfinite(Series(out).load()).all()


def test_assemble_series_length_mismatch(embedding_files, tmp_path) -> None:
    with pytest.raises(ValueError, match="4 embedding files for 3 dates"):
        assemble_series(embedding_files, DATES[:3], tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()


# --------------------------------------------------------------------------- reading the series from its cube


def _grid(rows: int, cols: int) -> Grid:
    return Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=cols, height=rows, tile_size=1,
                bands=[1], dtype="uint16")


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 3 * 4 * 3, 5 * 4 * 3])  # one chunk; 3 tiles; 5 tiles a chunk
def test_series_reads_like_the_filled_array(tmp_path, monkeypatch, chunk_bytes: int) -> None:
    """Blocks, chosen tiles and the whole series equal the array filled from the nearest valid dates,
    whatever the chunks (whole rows, parts of rows) and the block size."""
    import landtaxa.learning.cube

    monkeypatch.setattr(landtaxa.learning.cube, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(1)
    grid = _grid(6, 11)
    tile_ids = np.sort(rng.choice(grid.n_tiles, 50, replace=False))
    x = rng.normal(0, 1, (50, 5, 3)).astype(np.float32)
    valid = rng.uniform(size=(50, 5)) > 0.3
    valid[:, 2] |= ~valid.any(axis=1)
    valid[tile_ids < 11, 1] = False  # the first grid row missing on date 1: its chunks are never written
    expected = x[np.arange(50)[:, None], nearest_valid_index(valid)]
    from landtaxa.clustering.series import save_series

    save_series(tmp_path / "s.npz", x, tile_ids, DATES + ["2021-05-30"], grid, valid)
    for block_bytes in (1, 4 * 5 * 3 * 7, 1 << 20):
        s = Series(tmp_path / "s.npz", block_bytes=block_bytes)
        assert s.shape == (50, 5, 3) and s.nbytes == 50 * 5 * 3 * 4
        np.testing.assert_array_equal(s.tile_ids, tile_ids)
        seen = np.zeros(50, int)
        for positions, block in s.blocks():
            seen[positions] += 1
            np.testing.assert_array_equal(block, expected[positions])
        assert (seen == 1).all()
        order = rng.permutation(s.n_blocks())
        assert sorted(np.concatenate([p for p, _ in s.blocks(order)]).tolist()) == list(range(50))
        np.testing.assert_array_equal(s.load(), expected)
        pick = rng.permutation(50)[:17]
        np.testing.assert_array_equal(s.take(pick), expected[pick])
        assert s.take(np.array([], np.int64)).shape == (0, 5, 3)


def test_series_step_writes_no_copy_of_the_embeddings(embedding_files, tmp_path) -> None:
    out = tmp_path / "series" / "geo.npz"
    assemble_series(embedding_files, DATES, out, max_missing=0.5)
    cube = out.with_suffix(".zarr")
    written = sum(os.path.getsize(os.path.join(top, f)) for top, _, files in os.walk(cube) for f in files)
    assert written < 20_000 and (cube / "embedding" / "0").is_symlink()
    assert load_npz(out)["source"].tolist() == [[0, 1, 2, 3], [0, 0, 2, 2], [1, 1, 2, 2], [1, 1, 1, 3]]


def test_a_series_whose_embeddings_are_gone_is_refused_by_name(embedding_files, tmp_path) -> None:
    """The cube links to the per-date stores: a store deleted (or left incomplete) after the series step must
    stop the reader naming the date, never read as NaN."""
    import shutil

    out = tmp_path / "series.npz"
    assemble_series(embedding_files, DATES, out, max_missing=0.5)
    chunk = next(p for p in sorted((embedding_files[1] / "embedding").rglob("*")) if p.is_file() and p.name[0] != ".")
    chunk.unlink()  # an incomplete store: the tiles valid on DATES[1] have nowhere to be read from
    with pytest.raises(FileNotFoundError, match=f"{DATES[1]}.*incomplete"):
        Series(out).load()
    shutil.rmtree(embedding_files[2])
    with pytest.raises(FileNotFoundError, match=f"embeddings of {DATES[2]} are gone"):
        Series(out)


def test_an_index_that_is_no_series_is_refused(tmp_path) -> None:
    from landtaxa.storage import save_npz

    save_npz(tmp_path / "old.npz", series=np.zeros((2, 2, 2), np.float32), tile_ids=np.arange(2))
    with pytest.raises(ValueError, match="not a series index"):
        Series(tmp_path / "old.npz")


def _random_dates(folder, grid: Grid, patterns: dict[int, str], dtype: str = "float32", seed: int = 3):
    """Stores of ``patterns`` over len(pattern) dates with random embeddings (feature 2 constant on each date), and
    the raw (n_tiles, T, D) array as stored."""
    n_t = len(next(iter(patterns.values())))
    raw = np.random.default_rng(seed).normal(2, 3, (grid.n_tiles, n_t, D)).astype(np.float32)
    raw[:, :, 2] = np.arange(n_t) / 10
    stores = write_dates(folder, grid, patterns, [f"2021-{t + 1:02d}-01" for t in range(n_t)],
                         lambda tile, t: raw[tile, t], dtype)
    return stores, [f"2021-{t + 1:02d}-01" for t in range(n_t)], raw.astype(dtype).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_standardised_series_is_standard_over_its_tiles(tmp_path, dtype: str) -> None:
    """Each date's moments are those of the series itself (the kept tiles, filled values included: what the
    clustering sees), from the embedding jobs' sums: every feature of the standardised series has zero mean and
    unit variance over the tiles, as one pass over the series gives."""
    from landtaxa.clustering.series import feature_moments

    stores, dates, raw = _random_dates(tmp_path / "embeddings", ROW, PATTERNS, dtype)
    plain, std = tmp_path / "raw.npz", tmp_path / "std.npz"
    assemble_series(stores, dates, plain, max_missing=0.5)
    assemble_series(stores, dates, std, max_missing=0.5, standardise="zscore")
    index = load_npz(std)
    np.testing.assert_array_equal(index["tile_ids"], [0, 1, 4, 6])  # 2 and 5, valid on a date each, are dropped
    assert (~index["valid"]).sum() == 6  # filled tile-dates
    x, z = Series(plain).load(), Series(std).load()
    assert Series(std).standardised and not Series(plain).standardised
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :, :2].std(axis=0), 1.0, rtol=1e-5)
    mean, sd = feature_moments(Series(plain))
    np.testing.assert_allclose(index["mean"], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(index["sd"], sd, rtol=1e-6)
    np.testing.assert_allclose(z, (x - index["mean"]) / index["sd"], rtol=1e-6)
    np.testing.assert_allclose(Series(std).take(np.array([2, 0])), z[[2, 0]], rtol=1e-6)


def test_the_series_step_reads_the_dropped_and_the_filled_rows_only(tmp_path, monkeypatch) -> None:
    """Every store holds its sums: the moments take off the rows of the dropped tiles valid that date and add those
    of the filled tile-dates (their source date's row), the only rows read; no pass over the series."""
    import landtaxa.clustering.series
    from landtaxa.clustering.series import feature_moments
    from landtaxa.learning.cube import ZArray

    grid = _grid(5, 8)  # one chunk: a tile's row in it is its id
    patterns = {tile: "xxxx" for tile in range(32)}
    patterns.update({3: "xx.x", 17: "x.xx", 30: ".xxx"})  # kept, one date filled each
    patterns.update({tile: "...x..."[tile % 4:tile % 4 + 4] for tile in range(32, 40)})  # dropped
    stores, dates, _ = _random_dates(tmp_path / "embeddings", grid, patterns)
    assemble_series(stores, dates, tmp_path / "plain.npz", max_missing=0.5)
    expected = feature_moments(Series(tmp_path / "plain.npz"))
    read = []
    rows, picked = ZArray.read_rows, ZArray.read_picked
    monkeypatch.setattr(ZArray, "read_rows", lambda self, i, a, b: read.append((self.path, range(a, b)))
                        or rows(self, i, a, b))
    monkeypatch.setattr(ZArray, "read_picked", lambda self, i, at: read.append((self.path, at)) or picked(self, i, at))

    def no_pass(*_):
        raise AssertionError("a pass over the series")

    monkeypatch.setattr(Series, "blocks", no_pass)
    monkeypatch.setattr(landtaxa.clustering.series, "feature_moments", no_pass)
    out = tmp_path / "std.npz"
    assemble_series(stores, dates, out, max_missing=0.5, standardise="zscore")
    index = load_npz(out)
    np.testing.assert_array_equal(index["tile_ids"], np.arange(32))
    sources = {0: {17}, 1: {3, 30}}  # date -> the kept tiles filled from it (the earlier date on a tie)
    for t, store in enumerate(stores):
        tiles = {int(r) for path, at in read if path == store / "embedding" for r in at}
        needed = {tile for tile in range(32, 40) if patterns[tile][t] == "x"} | sources.get(t, set())
        assert needed <= tiles, t
        assert not tiles & (set(range(32)) - needed), t  # no kept tile beyond those filled from this date
    np.testing.assert_allclose(index["mean"], expected[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(index["sd"], expected[1], rtol=1e-6)


def test_stores_without_sums_give_the_same_moments(tmp_path) -> None:
    """A store written before the embedding jobs kept their sums: the kept rows are read and summed instead."""
    import shutil

    from landtaxa.learning.cube import read_moments

    stores, dates, _ = _random_dates(tmp_path / "embeddings", ROW, PATTERNS)
    assemble_series(stores, dates, tmp_path / "new.npz", max_missing=0.5, standardise="zscore")
    for store in stores[::2]:  # some stores old, some new
        shutil.rmtree(store / "moments")
        assert read_moments(store) is None
    assemble_series(stores, dates, tmp_path / "old.npz", max_missing=0.5, standardise="zscore")
    new, old = load_npz(tmp_path / "new.npz"), load_npz(tmp_path / "old.npz")
    np.testing.assert_allclose(old["mean"], new["mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(old["sd"], new["sd"], rtol=1e-6)


def test_a_store_whose_sums_disagree_with_its_validity_is_refused(tmp_path) -> None:
    import json
    import re

    stores, dates, _ = _random_dates(tmp_path / "embeddings", ROW, PATTERNS)
    attrs = stores[1] / "moments" / ".zattrs"
    meta = json.loads(attrs.read_text())
    assert meta["count"] == 3
    attrs.write_text(json.dumps({**meta, "count": 2}))
    with pytest.raises(ValueError, match=re.escape(f"{stores[1]}: its moments count 2 valid tiles, its valid array 3")):
        assemble_series(stores, dates, tmp_path / "s.npz", max_missing=0.5, standardise="zscore")


def test_a_date_no_kept_tile_observes_takes_its_filled_values_moments(tmp_path, monkeypatch) -> None:
    """Date 2 is observed by a dropped tile only: its moments are those of the kept tiles' filled values, read from
    their source dates, without a pass over the series."""
    from landtaxa.clustering.series import feature_moments

    patterns = {0: "xx.x", 1: "x..x", 2: "..x.", 3: ".x.x"}
    stores, dates, _ = _random_dates(tmp_path / "embeddings", _grid(1, 4), patterns)
    assemble_series(stores, dates, tmp_path / "raw.npz", max_missing=0.5)
    mean, sd = feature_moments(Series(tmp_path / "raw.npz"))
    monkeypatch.setattr(Series, "blocks", lambda *_: pytest.fail("a pass over the series"))
    assemble_series(stores, dates, tmp_path / "std.npz", max_missing=0.5, standardise="zscore")
    index = load_npz(tmp_path / "std.npz")
    np.testing.assert_array_equal(index["tile_ids"], [0, 1, 3])
    assert not index["valid"][:, 2].any()
    np.testing.assert_allclose(index["mean"], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(index["sd"], sd, rtol=1e-6)


def test_a_few_scattered_tiles_are_read_alone(tmp_path, monkeypatch) -> None:
    """A sample's few tiles far apart in a chunk are read tile by tile, not the chunk's whole span."""
    from landtaxa.clustering.series import save_series
    from landtaxa.learning.cube import ZArray

    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (1000, 3, 4)).astype(np.float32)
    s = save_series(tmp_path / "s.npz", x, np.arange(1000), ["2021-01-01", "2021-02-01", "2021-03-01"], _grid(20, 50))
    spans = []
    read_rows = ZArray.read_rows
    monkeypatch.setattr(ZArray, "read_rows", lambda self, i, a, b: spans.append(b - a) or read_rows(self, i, a, b))
    pick = np.array([990, 3, 500])
    np.testing.assert_array_equal(s.take(pick), x[pick])
    assert spans == []  # three tiles in a chunk of 1,000: read alone
    np.testing.assert_array_equal(s.take(np.arange(100, 130)), x[100:130])
    assert spans == [30, 30, 30]  # neighbours: their span, once per date


# --------------------------------------------------------------------------- subsets and the order of a pass


def _on_disk(tmp_path, n: int = 1200, t: int = 3, d: int = 8, block_bytes: int = 12_000):
    """An (n, t, d) series written as a run writes it (50 tiles per grid row) and opened with small blocks."""
    from landtaxa.clustering.series import save_series

    x = np.random.default_rng(4).normal(size=(n, t, d)).astype(np.float32)
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=50, height=-(-n // 50),
                tile_size=1, bands=[1], dtype="uint16")
    save_series(tmp_path / "s.npz", x, np.arange(n), [f"2021-0{i + 1}-01" for i in range(t)], grid)
    return x, Series(tmp_path / "s.npz", block_bytes=block_bytes)


def _read_all(series, order=None) -> tuple[np.ndarray, np.ndarray]:
    parts = list(series.blocks(order))
    return np.concatenate([p for p, _ in parts]), np.concatenate([b for _, b in parts])


def test_a_subset_reads_the_chosen_tiles_only(tmp_path) -> None:
    from landtaxa.clustering.series import ArraySeries

    x, s = _on_disk(tmp_path)
    rows = np.sort(np.random.default_rng(1).choice(len(x), 300, replace=False))
    rows = np.union1d(rows, np.arange(500, 640))  # a long run of neighbours as well
    sub = s.subset(rows)
    assert sub.n == len(rows) and sub.shape == (len(rows), *x.shape[1:])
    positions, values = _read_all(sub)
    assert sorted(positions.tolist()) == list(range(len(rows)))
    np.testing.assert_array_equal(values[np.argsort(positions)], x[rows])
    np.testing.assert_array_equal(sub.take(np.array([0, 7])), x[rows[[0, 7]]])
    assert s.n == len(x)  # the series itself is untouched
    mem = ArraySeries(x).subset(rows)
    parts = list(mem.blocks())
    assert all(np.shares_memory(block, x) for _, block in parts)  # views of the runs, no copy
    np.testing.assert_array_equal(np.concatenate([b for _, b in parts]), x[rows])
    np.testing.assert_array_equal(mem.subset(np.array([1, 2])).load(), x[rows[[1, 2]]])


def _evict(paths) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # written just now: dirty pages stay in the cache until written back
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="needs preadv's RWF_NOWAIT (Linux)")
def test_a_pass_reads_the_cached_blocks_first_and_every_block_once(tmp_path, monkeypatch) -> None:
    """A series larger than the page cache: each pass reads first what is still cached, so what it reads from
    disk evicts blocks already used. The values read, and a K-means on them, do not depend on the order."""
    import landtaxa.learning.cube
    from landtaxa.clustering.clusters import cluster_series
    from landtaxa.params import ClusterParams

    # chunks of 2 grid rows: 12 of them
    monkeypatch.setattr(landtaxa.learning.cube, "CHUNK_BYTES", 100 * 3 * 8 * 4 // 3)
    x, s = _on_disk(tmp_path)
    assert s.n_blocks() >= 6
    chunk_files = sorted(p for p in (tmp_path / "s_dates").rglob("embedding/*/*/*") if p.is_file())
    _read_all(s)  # everything cached
    assert s.cached_first() is None  # nothing to gain: tile order
    first_rows = {p for p in chunk_files if p.parent.parent.name == "0"}  # the chunk row of the first tiles
    _evict(first_rows)
    page = bytearray(16)
    fd = os.open(sorted(first_rows)[0], os.O_RDONLY)
    try:
        os.preadv(fd, [page], 0, os.RWF_NOWAIT)
        pytest.skip("this file system keeps every file in memory: nothing to evict")
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    order = s.cached_first()
    assert order is not None and sorted(order.tolist()) == list(range(s.n_blocks()))
    chunk_row = [int(s._chunk[pieces[0][0]]) // s._col_chunks for pieces in s._plan]
    assert [chunk_row[i] == 0 for i in order] == sorted(chunk_row[i] == 0 for i in order)  # evicted ones last
    assert chunk_row[order[-1]] == 0 and chunk_row[order[0]] != 0
    _evict(first_rows)
    positions, values = _read_all(s)  # cached first, by itself
    assert sorted(positions.tolist()) == list(range(len(x)))
    np.testing.assert_array_equal(values[np.argsort(positions)], x)
    params = ClusterParams.from_json("{}", {"n_init": 2, "seed": 0})
    _evict(first_rows)
    reordered = cluster_series(s, 4, params)
    np.testing.assert_array_equal(reordered.labels, cluster_series(x, 4, params).labels)


def test_a_series_of_at_most_two_blocks_is_read_once_and_kept(tmp_path, monkeypatch) -> None:
    """K-means passes over a small series many times: it is read from the cube once, its blocks shared and
    read-only; a larger one is read at every pass, and a subset keeps its own blocks."""
    x, streamed = _on_disk(tmp_path, block_bytes=12_000)  # 115 KB: 10 blocks, streamed
    kept = Series(tmp_path / "s.npz", block_bytes=x.nbytes // 2)  # two blocks' bytes: kept
    reads = {"n": 0}
    original = Series._read_block

    def counting(self, pieces):
        reads["n"] += 1
        return original(self, pieces)

    monkeypatch.setattr(Series, "_read_block", counting)
    for series, per_pass in ((streamed, streamed.n_blocks()), (kept, 0)):
        reads["n"] = 0
        first = _read_all(series)
        np.testing.assert_array_equal(first[1][np.argsort(first[0])], x)
        for _ in range(3):
            again = _read_all(series, order=np.arange(series.n_blocks())[::-1])
            np.testing.assert_array_equal(again[1][np.argsort(again[0])], x)
        assert reads["n"] == series.n_blocks() + 3 * per_pass
    _, block = next(kept.blocks())
    with pytest.raises(ValueError, match="read-only"):
        block[0] = 0
    rows = np.arange(10, 400, 3)
    positions, values = _read_all(kept.subset(rows))
    np.testing.assert_array_equal(values[np.argsort(positions)], x[rows])
