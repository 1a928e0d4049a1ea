"""Tests of triplet tile extraction, augmentation and the training loop (landtaxa.learning.train)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from landtaxa.inputs.grid import Grid
from landtaxa.learning.networks import TileNet
from landtaxa.learning.train import augment, extract_triplet_tiles, train_triplets

CPU = torch.device("cpu")
TINY_WIDTHS = (8, 16, 16, 16)


@pytest.fixture(autouse=True, scope="module")
def _quiet(quiet_one_thread):
    """Every test here runs with the shared one-thread, quiet-log setup."""


def _dihedral(tile: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips/rotations of a (C, h, w) tile."""
    out = []
    for base in (tile, tile.flip(-1)):
        out += [torch.rot90(base, k, dims=(-2, -1)) for k in range(4)]
    return out


def test_augment_is_dihedral() -> None:
    torch.manual_seed(0)
    x = torch.rand(200, 3, 6, 6)
    out = augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    used = []
    for i in range(len(x)):
        matches = [j for j, v in enumerate(_dihedral(x[i])) if torch.equal(out[i], v)]
        assert matches, f"tile {i} is not a flip/rotation of its input"
        used.append(matches[0])
    # all 8 group elements occur, none overwhelmingly
    counts = np.bincount(used, minlength=8)
    assert (counts > 0).all() and counts.max() < 60
    # the input is left untouched
    assert not torch.equal(out, x)


def test_augment_independent_per_tile_and_seeded() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4).repeat(50, 1, 1, 1)
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    c = augment(x, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)
    # identical input tiles get different transforms
    assert len({tuple(t.flatten().tolist()) for t in a[0::2]}) > 1
    # values are only moved, never changed
    assert torch.equal(a.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)


COLOURS = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9]], np.float32)


def _colour_triplets(n: int, seed: int) -> np.ndarray:
    """(n, 3, 3, 8, 8) float16 triplets: anchor/neighbour of one colour, distant of another."""
    rng = np.random.default_rng(seed)
    ca = rng.integers(0, 3, n)
    cd = (ca + rng.integers(1, 3, n)) % 3

    def tiles(c: np.ndarray) -> np.ndarray:
        return COLOURS[c][:, :, None, None] + 0.05 * rng.standard_normal((len(c), 3, 8, 8))

    return np.stack([tiles(ca), tiles(ca), tiles(cd)], 1).astype(np.float16)


def _train(tiles: np.ndarray, seed: int = 0, epochs: int = 6) -> tuple[TileNet, list[float]]:
    torch.manual_seed(123)
    model = TileNet(3, z_dim=16, widths=TINY_WIDTHS)
    hist = train_triplets(
        model, tiles, epochs=epochs, batch_size=16, lr=1e-3, betas=(0.5, 0.999),
        margin=1.0, l2=0.01, seed=seed, device=CPU,
    )
    return model, hist


@pytest.fixture(scope="module")
def trained():
    tiles = _colour_triplets(96, 0)
    model, hist = _train(tiles)
    return tiles, model, hist


def test_train_reduces_loss(trained) -> None:
    tiles, model, hist = trained
    assert len(hist) == 6 and all(np.isfinite(hist))
    assert hist[-1] < 0.5 * hist[0]
    assert not model.training  # left in eval mode
    # the trained encoder separates the colours on held-out triplets
    test = torch.from_numpy(_colour_triplets(60, 1).astype(np.float32))
    with torch.no_grad():
        z = model(test.reshape(-1, 3, 8, 8)).reshape(60, 3, -1)
    d_an = (z[:, 0] - z[:, 1]).norm(dim=1)
    d_ad = (z[:, 0] - z[:, 2]).norm(dim=1)
    assert (d_an < d_ad).float().mean() > 0.9


def test_train_deterministic(trained) -> None:
    tiles, model, hist = trained
    model2, hist2 = _train(tiles)
    assert hist2 == hist
    for (k, v), v2 in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(v, v2), k
    _, hist3 = _train(tiles, seed=1)
    assert hist3 != hist


def test_train_without_augmentation_skips_a_last_batch_of_one_triplet() -> None:
    """33 triplets in batches of 16: each epoch trains on two batches of 16; the lone 33rd triplet
    (one anchor, one neighbour, one distant: nothing to contrast within a batch) is skipped."""
    tiles = _colour_triplets(33, 2)
    torch.manual_seed(0)
    model = TileNet(3, z_dim=16, widths=TINY_WIDTHS)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]) if module.training else None)
    hist = train_triplets(
        model, tiles, epochs=2, batch_size=16, lr=1e-3, betas=(0.9, 0.999),
        margin=1.0, l2=0.0, seed=0, device=CPU, augmentation=False,
    )
    assert seen == [3 * 16] * 4  # two batches of 16 triplets (3 tiles each) per epoch, never the last one
    assert len(hist) == 2 and all(np.isfinite(hist)) and all(h >= 0 for h in hist)


# --- extract_triplet_tiles ----------------------------------------------------------------

def _grid() -> Grid:
    return Grid(
        crs="EPSG:32630", transform=(10, 0, 500000, 0, -10, 4700000), width=64, height=48,
        tile_size=16, bands=[1, 2, 3], dtype="uint16",
        scale_min=[0, 100, 200], scale_max=[1000, 600, 1200],
    )


def _date_values(t: int, grid: Grid) -> np.ndarray:
    b, r, c = np.meshgrid(np.arange(3), np.arange(grid.height), np.arange(grid.width), indexing="ij")
    return ((b * 397 + r * 31 + c * 7 + t * 211) % 1400).astype(np.uint16)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    grid = _grid()
    folder = tmp_path_factory.mktemp("aligned")
    paths = []
    for t in range(2):
        path = folder / f"date{t}.tif"
        profile = {
            "driver": "GTiff", "width": grid.width, "height": grid.height, "count": 3, "dtype": "uint16",
            "crs": grid.crs, "transform": grid.affine, "tiled": True, "blockxsize": 16, "blockysize": 16,
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(_date_values(t, grid))
        paths.append(path)
    return grid, paths


def _expected(grid: Grid, t: int, r: int, c: int) -> np.ndarray:
    raw = _date_values(t, grid)[:, r : r + 16, c : c + 16].astype(np.float32)
    lo = np.array(grid.scale_min, np.float32)[:, None, None]
    hi = np.array(grid.scale_max, np.float32)[:, None, None]
    return np.clip((raw - lo) / (hi - lo), 0, 1).astype(np.float16)


TRIPLETS = np.array(
    [
        [[0, 0, 0], [0, 5, 7], [1, 32, 48]],
        [[1, 3, 11], [1, 0, 48], [0, 17, 29]],
        [[1, 32, 0], [0, 32, 0], [0, 31, 47]],
    ],
    np.int64,
)


def test_extract_triplet_tiles_windows_and_scaling(aligned) -> None:
    grid, paths = aligned
    tiles = extract_triplet_tiles(grid, paths, TRIPLETS)
    assert tiles.shape == (3, 3, 3, 16, 16) and tiles.dtype == np.float16
    assert not isinstance(tiles, np.memmap)
    for i in range(3):
        for j in range(3):
            t, r, c = TRIPLETS[i, j]
            np.testing.assert_array_equal(tiles[i, j], _expected(grid, t, r, c), err_msg=f"{i},{j}")
    # the scaling clips: band 2 runs from 100 to 600, the raw values reach 1399
    assert tiles[:, :, 1].max() == 1.0 and tiles[:, :, 1].min() == 0.0


def test_extract_triplet_tiles_memmap_path(aligned, tmp_path) -> None:
    grid, paths = aligned
    in_memory = extract_triplet_tiles(grid, paths, TRIPLETS)
    mapped = extract_triplet_tiles(grid, paths, TRIPLETS, scratch_dir=tmp_path, cache_mb=0)
    assert isinstance(mapped, np.memmap)
    assert mapped.shape == in_memory.shape and mapped.dtype == np.float16
    np.testing.assert_array_equal(np.asarray(mapped), in_memory)
    assert list(tmp_path.iterdir()) == []  # the scratch file is unlinked at once
