"""Training the encoder on triplets (geographic for f^g, cluster-guided for the refinement).

The tiles of all triplets are read once from the aligned rasters (one pass per date,
windowed reads), scaled to [0, 1] and kept as float16, in memory or, past
``cache_mb``, in a memory-mapped scratch file beside the output. Each epoch then
shuffles the triplets, applies an independent random flip/90-degree rotation to every
tile, and minimises the triplet loss with Adam. On CUDA the forward pass runs under
bf16 autocast; on the CPU in float32.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from landtaxa.encoder import triplet_loss
from landtaxa.grid import Grid
from landtaxa.storage import get_logger

log = get_logger()


def extract_triplet_tiles(
    grid: Grid,
    aligned: Sequence[str | os.PathLike],
    triplets: np.ndarray,
    scratch_dir: str | os.PathLike | None = None,
    cache_mb: float = 2048,
) -> np.ndarray:
    """Read the tiles of ``triplets`` (n, 3, [date, row, col]) into an (n, 3, C, ts, ts) array."""
    ts, n_b = grid.tile_size, grid.n_bands
    shape = (len(triplets), 3, n_b, ts, ts)
    nbytes = int(np.prod(shape)) * 2
    if nbytes > cache_mb * 2**20:
        fd, name = tempfile.mkstemp(suffix=".npy", dir=scratch_dir)
        os.close(fd)
        tiles = np.lib.format.open_memmap(name, mode="w+", dtype=np.float16, shape=shape)
        os.unlink(name)  # the mapping stays valid; the file vanishes with the process
    else:
        tiles = np.empty(shape, np.float16)
    flat = triplets.reshape(-1, 3)
    for t in np.unique(flat[:, 0]):
        idx = np.flatnonzero(flat[:, 0] == t)
        idx = idx[np.lexsort((flat[idx, 2], flat[idx, 1]))]
        with rasterio.open(aligned[t]) as src:
            for i in idx:
                _, r, c = flat[i]
                data = src.read(window=Window(int(c), int(r), ts, ts))
                tiles[i // 3, i % 3] = grid.scale(data)
        log.info("read %d triplet tiles of date %d/%d", len(idx), t + 1, len(aligned))
    return tiles


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply one random element of the dihedral group (flips, 90-degree turns) per tile."""
    k = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = x.clone()
    for code in range(1, 8):
        sel = (k == code).nonzero().flatten().to(x.device)
        if len(sel) == 0:
            continue
        part = x.index_select(0, sel)
        if code >= 4:
            part = part.flip(-1)
        out[sel] = torch.rot90(part, code % 4, dims=(-2, -1))
    return out


def train_triplets(
    model: nn.Module,
    tiles: np.ndarray,
    epochs: int,
    batch_size: int,
    lr: float,
    betas: tuple[float, float],
    margin: float,
    l2: float,
    seed: int,
    device: torch.device,
    augmentation: bool = True,
) -> list[float]:
    """Train ``model`` in place on triplet tiles (n, 3, C, ts, ts); return the loss per epoch."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device).train()
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
    use_amp = device.type == "cuda"
    n = len(tiles)
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        total, seen = 0.0, 0
        for start in range(0, n, batch_size):
            idx = np.sort(order[start : start + batch_size])
            if len(idx) < 2:
                continue
            x = torch.from_numpy(np.asarray(tiles[idx], np.float32))
            b = x.shape[0]
            x = x.reshape(b * 3, *x.shape[2:])
            if augmentation:
                x = augment(x, gen)
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                z = model(x).float()
            z = z.reshape(b, 3, -1)
            loss = triplet_loss(z[:, 0], z[:, 1], z[:, 2], margin, l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * b
            seen += b
        dt = time.perf_counter() - t0
        history.append(total / max(seen, 1))
        log.info(
            "epoch %d/%d: loss %.4f, %.1f s, %.0f triplets/s",
            epoch, epochs, history[-1], dt, seen / max(dt, 1e-9),
        )
    model.eval()
    return history


def scratch_dir_for(path: str | os.PathLike) -> Path:
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent
