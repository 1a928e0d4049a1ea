"""Tests of the embedding cube (landtaxa.learning.cube): Zarr arrays written and read with numpy, one date's
store written strip by strip, the cube of links over the dates, and the same store read by xarray
(with its CRS found by rioxarray) and by the zarr package."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from landtaxa.inputs.grid import Grid
from landtaxa.learning.cube import (
    CHUNK_BYTES,
    ZArray,
    atomic_dir,
    chunk_tiles,
    embedding_store,
    read_embeddings,
    read_moments,
    write_array,
    write_cube,
)

GRID = Grid(crs="EPSG:32631", transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), width=7 * 8, height=5 * 8,
            tile_size=8, bands=[1], dtype="uint16")  # 5 rows x 7 columns of 80 m tiles
DATES = ["2021-03-01", "2021-06-01", "2021-09-01"]


def _embeddings(t: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(t)
    return rng.normal(0, 3, (GRID.n_tiles, d)).astype(np.float32)


def _valid(t: int) -> np.ndarray:
    valid = np.random.default_rng(10 + t).uniform(size=GRID.n_tiles) > 0.3
    valid[7:14] = False  # a whole row missing: its chunks may be left unwritten
    return valid


def write_dates(folder: Path, d: int = 6, dtype: str = "float32", strip: int = 3) -> list[Path]:
    """One store per date, the tiles put strip by strip (``strip`` tiles at a time), as the embedding job does."""
    paths = []
    for t, date in enumerate(DATES):
        emb, valid = _embeddings(t, d), _valid(t)
        ids = np.flatnonzero(valid)
        with embedding_store(folder / f"{date}.zarr", GRID, d, valid, dtype, {"date": date}) as store:
            for s in range(0, len(ids), strip):
                store.put(ids[s:s + strip], emb[ids[s:s + strip]])
        paths.append(folder / f"{date}.zarr")
    return paths


def test_chunks_are_whole_rows_when_they_fit() -> None:
    assert chunk_tiles(100, 50, CHUNK_BYTES // 200) == (4, 50)  # 200 tiles a chunk: 4 rows of 50
    assert chunk_tiles(100, 500, CHUNK_BYTES // 200) == (1, 167)  # wider than a chunk: thirds of a row
    assert chunk_tiles(3, 5, 8) == (3, 5)  # a small grid: one chunk
    assert chunk_tiles(10, 10, 10 * CHUNK_BYTES) == (1, 1)
    assert chunk_tiles(50, 625, CHUNK_BYTES // 512) == (1, 313)  # 625 = 313 + 312: one tile of padding
    assert chunk_tiles(10, 30, CHUNK_BYTES // 70) == (2, 30)  # rows split evenly: 5 chunks of 2 rows


@pytest.mark.parametrize("shape,chunks", [((7, 5, 3), (3, 2, 3)), ((4,), (4,)), ((), ()), ((5, 6), (2, 6))])
def test_arrays_round_trip_with_edge_chunks(tmp_path: Path, shape, chunks) -> None:
    data = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    write_array(tmp_path / "a", data, [f"d{i}" for i in range(len(shape))], chunks=chunks)
    back = ZArray(tmp_path / "a")
    assert back.shape == shape and back.chunks == chunks and back.dtype == np.float32
    np.testing.assert_array_equal(back.read(), data)


def test_one_date_written_strip_by_strip(tmp_path: Path) -> None:
    path = write_dates(tmp_path)[1]
    got = read_embeddings(path)
    valid = _valid(1)
    np.testing.assert_array_equal(got["valid"], valid)
    np.testing.assert_array_equal(got["fraction"], valid.astype(np.float32))
    np.testing.assert_array_equal(got["embeddings"][valid], _embeddings(1, 6)[valid])
    assert np.isnan(got["embeddings"][~valid]).all()
    assert not list(tmp_path.glob(".*tmp*")), "no temporary store left"


def test_tiles_come_in_any_order_each_once(tmp_path: Path) -> None:
    """Windows put their tiles out of tile order: the store is the same; a chunk is written once complete."""
    ref = read_embeddings(write_dates(tmp_path / "ref")[0])
    emb, valid = _embeddings(0, 6), _valid(0)
    ids = np.random.default_rng(5).permutation(np.flatnonzero(valid))
    with embedding_store(tmp_path / "any.zarr", GRID, 6, valid, "float32", {"date": DATES[0]}) as store:
        for s in range(0, len(ids), 4):
            store.put(ids[s:s + 4], emb[ids[s:s + 4]])
        assert not store.open, "every chunk written once its valid tiles were in"
    got = read_embeddings(tmp_path / "any.zarr")
    for key in ("valid", "fraction"):
        np.testing.assert_array_equal(got[key], ref[key])
    np.testing.assert_array_equal(got["embeddings"], ref["embeddings"])
    with pytest.raises(ValueError, match="put twice"), \
            embedding_store(tmp_path / "d.zarr", GRID, 2, np.ones(GRID.n_tiles, bool)) as store:
        store.put(np.array([3, 4]), np.zeros((2, 2), np.float32))
        store.put(np.array([4]), np.zeros((1, 2), np.float32))
    assert not (tmp_path / "d.zarr").exists(), "a failed job leaves nothing"


def test_float16_store_and_its_range(tmp_path: Path) -> None:
    path = write_dates(tmp_path, dtype="float16")[0]
    assert ZArray(path / "embedding").dtype == np.float16
    valid = _valid(0)
    got = read_embeddings(path)["embeddings"][valid]
    np.testing.assert_allclose(got, _embeddings(0, 6)[valid], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="beyond float16's range"), \
            embedding_store(tmp_path / "big.zarr", GRID, 2, np.ones(GRID.n_tiles, bool), "float16") as store:
        store.put(np.arange(GRID.n_tiles), np.full((GRID.n_tiles, 2), 1e6, np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_store_keeps_the_sums_of_its_valid_tiles_as_stored(tmp_path: Path, dtype: str) -> None:
    """The writer sums x and x * x over the valid tiles put, as the store holds them (float16's rounding included):
    a tile put but not valid does not count. A store without them (an earlier version's) reads as None."""
    import json
    import shutil

    for t, path in enumerate(write_dates(tmp_path, dtype=dtype)):
        count, sums = read_moments(path)
        x = _embeddings(t, 6)[_valid(t)]
        stored = x.astype(dtype).astype(np.float64)
        assert count == int(_valid(t).sum()) and sums.shape == (2, 6) and sums.dtype == np.float64
        np.testing.assert_allclose(sums, [stored.sum(axis=0), (stored**2).sum(axis=0)], rtol=1e-12)
        if dtype == "float16":  # not the sums of the values before rounding
            assert not np.allclose(sums[0], x.astype(np.float64).sum(axis=0), rtol=1e-9, atol=0)
    meta = json.loads((path / ".zmetadata").read_text())["metadata"]
    assert meta["moments/.zattrs"]["_ARRAY_DIMENSIONS"] == ["moment", "feature"]
    with embedding_store(tmp_path / "one.zarr", GRID, 2, np.arange(GRID.n_tiles) == 1) as store:
        store.put(np.array([0, 1, 2]), np.array([[1, 2], [3, 4], [5, 6]], np.float32))
    count, sums = read_moments(tmp_path / "one.zarr")
    assert count == 1 and sums.tolist() == [[3, 4], [9, 16]]
    shutil.rmtree(path / "moments")
    assert read_moments(path) is None


def test_atomic_dir_replaces_a_previous_store(tmp_path: Path) -> None:
    final = tmp_path / "x.zarr"
    final.mkdir()
    (final / "old").write_text("old")
    with atomic_dir(final) as tmp:
        (tmp / "new").write_text("new")
        assert not (final / "new").exists()
    assert sorted(p.name for p in final.iterdir()) == ["new"]


def test_the_cube_links_the_dates_without_copying(tmp_path: Path) -> None:
    stores = write_dates(tmp_path / "embeddings" / "geo")
    cube = tmp_path / "series" / "geo.zarr"
    write_cube(cube, stores, DATES)
    assert ZArray(cube / "embedding").shape == (3, 5, 7, 6)
    for t in range(3):
        link = cube / "embedding" / str(t)
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve() == (stores[t] / "embedding").resolve()
    on_disk = sum(os.path.getsize(os.path.join(top, f)) for top, _, files in os.walk(cube) for f in files)
    assert on_disk < 20_000  # os.walk does not follow the links: the cube's own files are metadata
    # the whole tree can move: the links are relative
    os.rename(tmp_path / "embeddings", tmp_path / "moved")
    os.rename(tmp_path / "moved", tmp_path / "embeddings")
    assert ZArray(cube / "embedding").read_chunk((2, 0, 0, 0)) is not None


def test_a_cube_of_stores_that_differ_is_refused(tmp_path: Path) -> None:
    a = write_dates(tmp_path / "a", d=6)
    b = write_dates(tmp_path / "b", d=4)
    with pytest.raises(ValueError, match="differs from"):
        write_cube(tmp_path / "cube.zarr", [a[0], b[1]], DATES[:2])
    assert not (tmp_path / "cube.zarr").exists()


def test_xarray_reads_the_cube_georeferenced(tmp_path: Path) -> None:
    """xarray.open_zarr: dims time, y, x, feature; tile centres in the grid's CRS; rioxarray finds the CRS;
    a tile's vector is what landtaxa wrote."""
    xr = pytest.importorskip("xarray")
    rioxarray = pytest.importorskip("rioxarray")
    from rasterio.crs import CRS

    stores = write_dates(tmp_path / "embeddings", dtype="float16")
    write_cube(tmp_path / "geo.zarr", stores, DATES)
    ds = xr.open_zarr(tmp_path / "geo.zarr")
    assert ds["embedding"].dims == ("time", "y", "x", "feature")
    assert ds["embedding"].shape == (3, 5, 7, 6) and ds["embedding"].dtype == np.float16
    assert [str(t)[:10] for t in ds["time"].values] == DATES
    np.testing.assert_allclose(ds["x"].values, 500000 + 40 + 80 * np.arange(7))
    np.testing.assert_allclose(ds["y"].values, 4000000 - 40 - 80 * np.arange(5))
    assert ds["embedding"].rio.crs == CRS.from_user_input(GRID.crs)
    assert tuple(ds["embedding"].rio.transform())[:6] == tuple(GRID.tile_transform)[:6]
    row, col = 3, 5
    tile = row * GRID.n_cols + col
    t = next(t for t in range(3) if _valid(t)[tile])
    written = read_embeddings(stores[t])["embeddings"][tile]
    np.testing.assert_array_equal(ds["embedding"].isel(time=t, y=row, x=col).values.astype(np.float32), written)
    np.testing.assert_array_equal(ds["valid"].isel(time=t).values.reshape(-1), _valid(t))
    missing = int(np.flatnonzero(~_valid(0))[0])
    assert np.isnan(ds["embedding"].isel(time=0, y=missing // 7, x=missing % 7).values).all()
    # one date's store is a georeferenced map too
    one = xr.open_zarr(stores[0])
    assert one["embedding"].dims == ("y", "x", "feature") and one["embedding"].rio.crs is not None
    assert rioxarray is not None


def test_the_zarr_package_reads_it(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    stores = write_dates(tmp_path / "embeddings")
    write_cube(tmp_path / "geo.zarr", stores, DATES)
    group = zarr.open_group(str(tmp_path / "geo.zarr"), mode="r")
    arr = group["embedding"]
    assert arr.shape == (3, 5, 7, 6)
    np.testing.assert_array_equal(arr[1, 2, 3], read_embeddings(stores[1])["embeddings"][2 * 7 + 3])
