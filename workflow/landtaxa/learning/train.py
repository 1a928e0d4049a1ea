"""Training the encoder on triplets (geographic for f^g, cluster-guided for the refinement).

The tiles of all triplets are read once from the aligned rasters (one pass per date,
windowed reads), scaled to [0, 1] and kept as float16, in memory or, past
``cache_mb``, in a memory-mapped scratch file beside the output. Each epoch then
shuffles the triplets, applies an independent random flip/90-degree rotation to every
tile, and minimises the triplet loss with Adam (its fused kernel). On CUDA the forward pass runs under
bf16 autocast; on the CPU in float32.

A training job keeps to its time budget (``train.max_hours``, ``refine.max_hours``): when its epochs
and triplets would take longer at the estimated throughput of the device it runs on, it trains
fewer epochs, then fewer triplets (:func:`landtaxa.learning.budget.fit_training`), says so in its
log and records it in the checkpoint's metadata.
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

from landtaxa.inputs.grid import Grid
from landtaxa.learning.budget import TrainingFit, device_flops, fit_training, tile_flops, triplet_tiles_bytes
from landtaxa.learning.encoders import build_encoder, encoder_costs, load_checkpoint, save_checkpoint
from landtaxa.learning.networks import setup_torch, triplet_loss
from landtaxa.learning.triplets import cluster_triplets, geographic_triplets, triplet_budget
from landtaxa.params import RefineParams, TrainingParams, TrainParams
from landtaxa.storage import get_logger, load_npz

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
    if triplet_tiles_bytes(len(triplets), n_b, ts) > cache_mb * 2**20:
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
    # one fused kernel per step instead of about ten passes over every parameter (2x on the CPU)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, fused=device.type in ("cpu", "cuda"))
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


def _fractions(paths: Sequence[str]) -> list[np.ndarray]:
    return [load_npz(p)["fraction"] for p in paths]


def fit_budget(params: TrainingParams, encoder: str, grid: Grid, triplets: int, device: torch.device,
               threads: int) -> TrainingFit:
    """The triplets and epochs that fit the job's time budget on ``device`` (logged when they were cut)."""
    flops = device_flops(device.type != "cpu", threads, params.gpu_tflops, params.cpu_gflops)
    fit = fit_training(encoder_costs(encoder), grid.tile_size, grid.n_bands, triplets, params.epochs,
                       params.max_hours, flops, params.section)
    if fit.shrunk:
        log.warning("%s", fit.note)
    return fit


def _fit_and_save(model: nn.Module, triplets: np.ndarray, grid: Grid, aligned: Sequence[str], out: str,
                  params: TrainingParams, fit: TrainingFit, meta: dict, device: torch.device) -> None:
    tiles = extract_triplet_tiles(grid, aligned, triplets, scratch_dir_for(out), params.cache_mb)
    t0 = time.perf_counter()
    history = train_triplets(
        model, tiles, epochs=fit.epochs, batch_size=params.batch_size, lr=params.lr, betas=tuple(params.betas),
        margin=params.margin, l2=params.l2, seed=params.seed, device=device, augmentation=params.augment,
    )
    seconds = time.perf_counter() - t0
    # the throughput reached, for the estimates' settings (compute.gpu_tflops / compute.cpu_gflops)
    flops = len(triplets) * fit.epochs * 9 * tile_flops(encoder_costs(meta["encoder"]), grid.tile_size) / seconds
    log.info("trained %d triplets x %d epochs in %.0f s on %s: %.3g GFLOP/s sustained (compute.%s assumes %g)",
             len(triplets), fit.epochs, seconds, device, flops / 1e9,
             "cpu_gflops" if device.type == "cpu" else "gpu_tflops",
             params.cpu_gflops if device.type == "cpu" else params.gpu_tflops)
    meta.update({"loss_history": history, "train_seconds": seconds, "n_triplets": int(len(triplets)),
                 "epochs": fit.epochs, "estimated_seconds": fit.seconds, "budget": fit.note,
                 "sustained_gflops": flops / 1e9, "device": str(device)})
    save_checkpoint(out, model, meta)
    log.info("saved %s", out)


def train_step(*, grid: str, aligned: list[str], valid: list[str], out: str, params: TrainParams,
               threads: int = 1) -> None:
    """The geographic encoder f^g (Tile2Vec) on triplets of the training dates."""
    device = setup_torch(threads, params.device)
    g = Grid.load(grid)
    rng = np.random.default_rng(params.seed)
    fit = fit_budget(params, params.encoder, g, triplet_budget(params.triplets, g.n_tiles, len(valid)), device,
                     threads)
    log.info("%d geographic triplets over %d tiles and %d dates, %d epochs (about %.0f s estimated)", fit.triplets,
             g.n_tiles, len(valid), fit.epochs, fit.seconds)
    triplets = geographic_triplets(g, _fractions(valid), fit.triplets, params.radius or g.tile_size,
                                   params.min_valid, rng)
    torch.manual_seed(params.seed)
    model = build_encoder(params.encoder, g.n_bands, params.z_dim)
    meta = {"encoder": params.encoder, "in_channels": g.n_bands, "z_dim": params.z_dim,
            "tile_size": g.tile_size, "kind": "geographic", "seed": params.seed}
    _fit_and_save(model, triplets, g, aligned, out, params, fit, meta, device)


def refine_step(*, grid: str, parent: str, clusters: str, aligned: list[str], valid: list[str], out: str,
                params: RefineParams, threads: int = 1) -> None:
    """A refined encoder: ``parent`` fine-tuned on triplets guided by the parent's clusters."""
    device = setup_torch(threads, params.device)
    g = Grid.load(grid)
    model, meta = load_checkpoint(parent, device)
    c = load_npz(clusters)
    rng = np.random.default_rng(params.seed)
    fit = fit_budget(params, meta["encoder"], g, triplet_budget(params.triplets, g.n_tiles, len(valid)), device,
                     threads)
    triplets = cluster_triplets(g, c["tile_ids"], c["labels"], _fractions(valid), fit.triplets, params.min_valid, rng)
    log.info("sampled %d cluster-guided triplets over %d dates, %d epochs (about %.0f s estimated)", len(triplets),
             len(valid), fit.epochs, fit.seconds)
    meta = {**{k: meta[k] for k in ("encoder", "in_channels", "z_dim", "tile_size")},
            "kind": "refined", "parent": os.path.basename(parent), "seed": params.seed}
    _fit_and_save(model, triplets, g, aligned, out, params, fit, meta, device)


def untrained_step(*, grid: str, encoder: str, out: str) -> None:
    """The model file of an encoder that learns nothing (``trains`` False, e.g. the spectral baseline)."""
    g = Grid.load(grid)
    model = build_encoder(encoder, g.n_bands, 0)
    save_checkpoint(out, model, {"encoder": encoder, "in_channels": g.n_bands, "z_dim": int(model.z_dim),
                                 "tile_size": g.tile_size, "kind": "untrained"})
    log.info("%s: %d features per tile and date", encoder, model.z_dim)
