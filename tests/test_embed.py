"""Tests of tiling, gap filling and per-date embedding (landtaxa.learning.embed)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
import torch
from rasters import write_raster

from landtaxa.inputs.grid import Grid, to_tiles
from landtaxa.learning.cube import read_embeddings
from landtaxa.learning.embed import default_batch_size, embed_date, encode, encode_adaptive
from landtaxa.learning.encoders import build_encoder
from landtaxa.learning.networks import TileNet
from landtaxa.learning.pixels import baseline_step, fill_invalid
from landtaxa.params import EmbedParams

CPU = torch.device("cpu")
TS = 8
MIN_VALID = 0.5


@pytest.fixture(autouse=True, scope="module")
def _quiet(quiet_one_thread):
    """Every test here runs with the shared one-thread, quiet-log setup."""


def test_to_tiles_row_major() -> None:
    block = np.arange(2 * 12 * 16, dtype=np.float32).reshape(2, 12, 16)
    tiles = to_tiles(block, 4)
    assert tiles.shape == (12, 2, 4, 4)
    for r in range(3):
        for c in range(4):
            np.testing.assert_array_equal(tiles[r * 4 + c], block[:, r * 4 : r * 4 + 4, c * 4 : c * 4 + 4])


def test_to_tiles_single_band_mask() -> None:
    mask = np.zeros((1, 8, 12), bool)
    mask[0, 4:, 8:] = True  # exactly tile (1, 2)
    tiles = to_tiles(mask, 4)
    assert tiles.shape == (6, 1, 4, 4)
    assert tiles.reshape(6, -1).all(axis=1).tolist() == [False] * 5 + [True]


def test_fill_invalid() -> None:
    rng = np.random.default_rng(0)
    tiles = rng.uniform(0, 1, (4, 3, 5, 5)).astype(np.float32)
    masks = rng.uniform(0, 1, (4, 5, 5)) > 0.4
    masks[1] = True  # fully valid tile
    out = fill_invalid(tiles, masks)
    assert out.shape == tiles.shape and out.dtype == np.float32
    for i in range(4):
        m = masks[i]
        for b in range(3):
            np.testing.assert_array_equal(out[i, b][m], tiles[i, b][m])
            if (~m).any():
                mean = tiles[i, b][m].astype(np.float64).mean()
                np.testing.assert_allclose(out[i, b][~m], mean, rtol=1e-6)
    np.testing.assert_array_equal(out[1], tiles[1])
    # an invalid pixel holding garbage (NaN) does not leak into the mean
    tiles[0, :, ~masks[0]] = np.nan
    out = fill_invalid(tiles, masks)
    assert np.isfinite(out[0]).all()


def _grid() -> Grid:
    return Grid(
        crs="EPSG:32630", transform=(10, 0, 500000, 0, -10, 4700000), width=4 * TS, height=5 * TS,
        tile_size=TS, bands=[1, 2, 3], dtype="uint16",
        scale_min=[0, 50, 100], scale_max=[1000, 800, 1500],
    )


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    grid = _grid()
    rng = np.random.default_rng(1)
    data = rng.integers(0, 1500, (3, grid.height, grid.width)).astype(np.uint16)
    mask = np.ones((grid.height, grid.width), bool)
    mask[0:TS, 0:TS] = False  # tile 0: empty
    mask[TS : 2 * TS, TS : TS + 6] = False  # tile 5: 25 % valid
    mask[2 * TS : 2 * TS + 3, 2 * TS : 3 * TS] = False  # tile 10: 62.5 % valid
    mask[4 * TS :, 3 * TS + 4 :] = False  # tile 19: 50 % valid (kept: >= min_valid)
    mask[3 * TS + 2, 5] = False  # tile 12: one pixel missing
    data[:, ~mask] = 65535  # garbage under the mask
    path = tmp_path_factory.mktemp("embed") / "aligned.tif"
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": 3, "dtype": "uint16",
        "crs": grid.crs, "transform": grid.affine, "tiled": True, "blockxsize": 16, "blockysize": 16,
    }
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            dst.write_mask((mask * 255).astype(np.uint8))
    fractions = mask.reshape(grid.n_rows, TS, grid.n_cols, TS).mean(axis=(1, 3)).astype(np.float32)
    return grid, path, data, mask, fractions


@pytest.fixture(scope="module")
def model() -> TileNet:
    torch.manual_seed(0)
    net = TileNet(3, z_dim=16, widths=(8, 16, 16, 16))
    net.train()
    with torch.no_grad():  # non-default BatchNorm statistics
        net(torch.rand(8, 3, TS, TS))
    return net.eval()


def _reference(model: TileNet, grid: Grid, data: np.ndarray, mask: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Encode every valid tile alone, filling its gaps by hand."""
    lo = np.array(grid.scale_min, np.float32)[:, None, None]
    hi = np.array(grid.scale_max, np.float32)[:, None, None]
    out = np.full((grid.n_tiles, 16), np.nan, np.float32)
    for i in range(grid.n_tiles):
        if fractions.reshape(-1)[i] < MIN_VALID:
            continue
        r, c = divmod(i, grid.n_cols)
        win = (slice(r * TS, (r + 1) * TS), slice(c * TS, (c + 1) * TS))
        tile = np.clip((data[(slice(None), *win)].astype(np.float32) - lo) / (hi - lo), 0, 1)
        m = mask[win]
        for b in range(3):
            tile[b][~m] = tile[b][m].mean()
        with torch.no_grad():
            out[i] = model(torch.from_numpy(tile[None])).numpy()[0]
    return out


def _run(model, grid, path, fractions, out, window_px, batch_size) -> dict:
    embed_date(model, grid, path, fractions, out, MIN_VALID, batch_size, CPU, window_px=window_px)
    return read_embeddings(out)


def test_embed_date_matches_tile_by_tile(raster, model, tmp_path) -> None:
    grid, path, data, mask, fractions = raster
    ref = _reference(model, grid, data, mask, fractions)
    res = _run(model, grid, path, fractions, tmp_path / "e.zarr", window_px=2 * grid.tile_size, batch_size=3)
    assert set(res) == {"embeddings", "valid", "fraction"}
    emb, valid = res["embeddings"], res["valid"]
    assert emb.shape == (grid.n_tiles, 16) and emb.dtype == np.float32
    expected_valid = fractions.reshape(-1) >= MIN_VALID
    np.testing.assert_array_equal(valid, expected_valid)
    assert not valid[0] and not valid[5] and valid[10] and valid[19] and valid[12]
    np.testing.assert_array_equal(res["fraction"], fractions.reshape(-1))
    assert np.isnan(emb[~valid]).all()
    assert np.isfinite(emb[valid]).all()
    np.testing.assert_allclose(emb[valid], ref[valid], rtol=1e-5, atol=1e-5)
    # embeddings differ between tiles (not a constant output)
    assert np.ptp(emb[valid], axis=0).max() > 1e-3


def test_embed_date_independent_of_windows_and_batches(raster, model, tmp_path) -> None:
    grid, path, _, _, fractions = raster
    runs = [
        _run(model, grid, path, fractions, tmp_path / f"e{i}.zarr", window_px=w * grid.tile_size,
             batch_size=bs)["embeddings"]
        for i, (w, bs) in enumerate([(1, 1), (2, 5), (3, 64), (1024, 2)])
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(np.isnan(other), np.isnan(runs[0]))
        np.testing.assert_allclose(other, runs[0], rtol=1e-5, atol=1e-5)


def test_embed_date_all_invalid_date(raster, model, tmp_path) -> None:
    grid, path, _, _, fractions = raster
    res = _run(model, grid, path, np.zeros_like(fractions), tmp_path / "none.zarr", 2, 4)
    assert not res["valid"].any() and np.isnan(res["embeddings"]).all()


def test_embed_date_rejects_wrong_size(raster, model, tmp_path) -> None:
    grid, path, _, _, fractions = raster
    bigger = Grid(**{**grid.__dict__, "width": grid.width + TS})
    with pytest.raises(ValueError, match="does not match the grid"):
        embed_date(model, bigger, path, np.ones((5, 5), np.float32), tmp_path / "x.zarr", MIN_VALID, 4, CPU)
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("baseline", ["spectral", "means"])
def test_a_baseline_job_equals_embedding_with_its_encoder(raster, tmp_path, baseline) -> None:
    """The baseline job (band statistics in numpy) writes what embedding with the baseline's encoder writes, its
    missing pixels skipped rather than filled (tests/test_cli.py checks that its step loads no torch)."""
    grid, path, data, mask, fractions = raster
    grid.save(tmp_path / "grid.json")
    np.savez(tmp_path / "valid.npz", fraction=fractions)
    baseline_step(grid=str(tmp_path / "grid.json"), encoder=baseline, aligned=str(path),
                  valid=str(tmp_path / "valid.npz"), out=str(tmp_path / "b.zarr"), date="2024-05-01",
                  params=EmbedParams.from_json(json.dumps({"min_valid": MIN_VALID})))
    job = read_embeddings(tmp_path / "b.zarr")
    encoder = build_encoder(baseline, 3, 0)
    ref = _run(encoder, grid, path, fractions, tmp_path / "e.zarr", window_px=2 * TS, batch_size=3)
    np.testing.assert_array_equal(job["valid"], ref["valid"])
    np.testing.assert_allclose(job["embeddings"], ref["embeddings"], rtol=1e-6, atol=1e-7)
    assert job["embeddings"].shape[1] == {"spectral": 6, "means": 3}[baseline]
    # tile 12 misses one pixel: its mean skips it (the garbage under the mask would move it)
    r, c = divmod(12, grid.n_cols)
    band0 = grid.scale(data[:, r * TS : (r + 1) * TS, c * TS : (c + 1) * TS])[0]
    assert job["embeddings"][12, 0] == pytest.approx(band0[mask[r * TS : (r + 1) * TS, c * TS : (c + 1) * TS]].mean(),
                                                     rel=1e-5)


def test_one_job_embeds_with_each_member_as_their_own_jobs_would(raster, tmp_path) -> None:
    """A model's members share one job per date (one start, torch loaded once): each store equals what a job of
    that member alone writes."""
    from landtaxa.learning.embed import embed_step
    from landtaxa.learning.encoders import save_checkpoint

    grid, path, _, _, fractions = raster
    grid.save(tmp_path / "grid.json")
    np.savez(tmp_path / "valid.npz", fraction=fractions)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(str(tmp_path / f"geo{seed}.pt"))
        save_checkpoint(models[-1], build_encoder("tilenet-lite", 3, 16),
                        {"encoder": "tilenet-lite", "in_channels": 3, "z_dim": 16, "tile_size": TS, "kind": "geo"})
    params = EmbedParams.from_json(json.dumps({"min_valid": MIN_VALID, "device": "cpu"}))
    common = {"grid": str(tmp_path / "grid.json"), "aligned": str(path), "valid": str(tmp_path / "valid.npz"),
              "date": "2024-05-01", "params": params}
    together = [str(tmp_path / f"together{i}.zarr") for i in (0, 1)]
    embed_step(model=models, out=together, **common)
    for i, model in enumerate(models):
        embed_step(model=[model], out=[str(tmp_path / f"alone{i}.zarr")], **common)
        a, b = read_embeddings(together[i]), read_embeddings(tmp_path / f"alone{i}.zarr")
        np.testing.assert_array_equal(a["valid"], b["valid"])
        np.testing.assert_array_equal(a["embeddings"], b["embeddings"])
    first, second = (read_embeddings(p)["embeddings"] for p in together)
    assert not np.allclose(first[np.isfinite(first)], second[np.isfinite(second)])  # two members, two encoders
    with pytest.raises(ValueError, match="2 models .* but 1 output stores"):
        embed_step(model=models, out=[str(tmp_path / "one.zarr")], **common)
    assert not (tmp_path / "one.zarr").exists()


def test_encode_batches() -> None:
    torch.manual_seed(0)
    net = TileNet(2, z_dim=16, widths=(8, 8, 8, 8)).eval()
    tiles = np.random.default_rng(0).uniform(0, 1, (7, 2, TS, TS)).astype(np.float32)
    a = encode(net, tiles, 3, CPU)
    b = encode(net, tiles, 7, CPU)
    assert a.shape == (7, 16)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_default_batch_size_per_encoder_and_device() -> None:
    """No batch in the config: on a CPU, by encoder and tile size (100 px: 8 TileNet, more lite); 512 on CUDA."""
    tilenet, lite = build_encoder("tilenet", 3, 16), build_encoder("tilenet-lite", 3, 16)
    assert default_batch_size(torch.device("cpu"), tilenet) == 8
    assert default_batch_size(torch.device("cpu"), lite) > default_batch_size(torch.device("cpu"), tilenet)
    assert default_batch_size(torch.device("cpu")) == 8  # any other model
    # smaller tiles, proportionally more of them per batch (same pixels), within [1, 1024]
    assert default_batch_size(torch.device("cpu"), tilenet, tile_size=50) == 32
    assert default_batch_size(torch.device("cpu"), tilenet, tile_size=16) == 312
    assert default_batch_size(torch.device("cpu"), lite, tile_size=8) == 1024
    assert default_batch_size(torch.device("cpu"), tilenet, tile_size=1000) == 1
    assert default_batch_size(torch.device("cuda"), lite) == default_batch_size(torch.device("cuda"), tilenet) == 512


# --------------------------------------------------------------------------- out of GPU memory


@pytest.fixture(scope="module")
def tiny_encoder(quiet_one_thread) -> TileNet:
    torch.manual_seed(0)
    return TileNet(2, z_dim=8, widths=(8, 8, 8, 8)).eval()


def _capped(model: TileNet, cap: int, error: type[Exception]):
    """The model's forward, raising ``error`` like CUDA does for batches above ``cap`` tiles."""
    forward = model.forward

    def capped(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > cap:
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(x)

    return capped


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, RuntimeError])
def test_out_of_memory_halves_the_batch(tiny_encoder, monkeypatch, caplog, error) -> None:
    tiles = np.random.default_rng(0).uniform(0, 1, (23, 2, 8, 8)).astype(np.float32)
    expected, _ = encode_adaptive(tiny_encoder, tiles, 23, torch.device("cpu"))
    monkeypatch.setattr(tiny_encoder, "forward", _capped(tiny_encoder, 5, error))
    with caplog.at_level(logging.WARNING, logger="landtaxa"):
        logging.getLogger("landtaxa").addHandler(caplog.handler)
        try:
            got, batch = encode_adaptive(tiny_encoder, tiles, 16, torch.device("cpu"))
        finally:
            logging.getLogger("landtaxa").removeHandler(caplog.handler)
    assert batch == 4
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["out of GPU memory at batch 16: retrying with batch 8",
                        "out of GPU memory at batch 8: retrying with batch 4"]


def test_out_of_memory_with_one_tile_is_an_error(tiny_encoder, monkeypatch) -> None:
    monkeypatch.setattr(tiny_encoder, "forward", _capped(tiny_encoder, 0, torch.cuda.OutOfMemoryError))
    with pytest.raises(MemoryError, match="batch of one tile"):
        encode_adaptive(tiny_encoder, np.zeros((3, 2, 8, 8), np.float32), 2, torch.device("cpu"))


def test_embed_date_after_out_of_memory_equals_a_run_without(tiny_encoder, monkeypatch, tmp_path) -> None:
    rng = np.random.default_rng(1)
    path = write_raster(tmp_path / "aligned.tif", rng.integers(0, 1000, (2, 32, 40)).astype("uint16"),
                        "EPSG:32631", (500000, 4000000, 10))
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=32, tile_size=8,
                bands=[1, 2], dtype="uint16", scale_min=[0, 0], scale_max=[1000, 1000])
    fractions = np.ones((4, 5), np.float32)
    embed_date(tiny_encoder, grid, path, fractions, tmp_path / "plain.zarr", 0.5, 64, torch.device("cpu"))
    monkeypatch.setattr(tiny_encoder, "forward", _capped(tiny_encoder, 3, torch.cuda.OutOfMemoryError))
    embed_date(tiny_encoder, grid, path, fractions, tmp_path / "oom.zarr", 0.5, 64, torch.device("cpu"))
    np.testing.assert_allclose(read_embeddings(tmp_path / "oom.zarr")["embeddings"],
                               read_embeddings(tmp_path / "plain.zarr")["embeddings"], rtol=1e-5, atol=1e-6)
