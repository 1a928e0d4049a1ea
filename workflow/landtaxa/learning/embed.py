"""Embedding every tile of one date with an encoder, in batches.

The windows are read and prepared as :mod:`landtaxa.learning.pixels` says (whole tiles, scaled to [0, 1],
gaps filled, the next windows read in a background thread while a batch is encoded). On CUDA the batches go
through pinned host memory with asynchronous copies and bf16 autocast, so the GPU is not left waiting on the
disk. When the GPU runs out of memory, the batch is halved and the same batch retried (with a warning in the
log).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from landtaxa.inputs.grid import Grid
from landtaxa.learning.budget import inference_batch, tile_flops
from landtaxa.learning.encoders import encoder_costs, load_checkpoint
from landtaxa.learning.networks import setup_torch
from landtaxa.learning.pixels import embed_windows
from landtaxa.params import EmbedParams
from landtaxa.storage import get_logger, load_npz

log = get_logger()


def encode(model: nn.Module, tiles: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """Encode an (n, C, ts, ts) float32 array in batches; returns (n, D) float32."""
    return encode_adaptive(model, tiles, batch_size, device)[0]


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the device running out of memory (CUDA's own error or a RuntimeError)."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err)
    )


@torch.inference_mode()
def encode_adaptive(
    model: nn.Module, tiles: np.ndarray, batch_size: int, device: torch.device
) -> tuple[np.ndarray, int]:
    """Encode in batches, halving the batch whenever the device runs out of memory.

    The failed batch is retried at half the size, and later batches keep the smaller size
    (returned, so the caller carries it on). Batches do not interact in eval mode, so the
    result is the same as with the batch that fits. Out of memory with a single tile is an error.
    """
    out = []
    use_amp = device.type == "cuda"
    s = 0
    while s < len(tiles):
        try:
            x = torch.from_numpy(tiles[s : s + batch_size])
            if use_amp:
                x = x.pin_memory()
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                z = model(x)
        except RuntimeError as err:
            if not is_out_of_memory(err):
                raise
            x = z = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size == 1:
                raise MemoryError(
                    f"out of {device.type} memory with a batch of one tile ({err}); use a smaller "
                    "tile_size or encoder, or a device with more memory"
                ) from err
            log.warning("out of GPU memory at batch %d: retrying with batch %d", batch_size, batch_size // 2)
            batch_size //= 2
            continue
        out.append(z.float().cpu().numpy())
        s += len(x)
    return (np.concatenate(out) if out else np.zeros((0, 0), np.float32)), batch_size


def default_batch_size(device: torch.device, model: nn.Module | None = None, tile_size: int = 100) -> int:
    """Tiles per inference batch when the config leaves it open (:func:`landtaxa.learning.budget.inference_batch`,
    from the model's ``cpu_batch_size``, set by :func:`landtaxa.learning.encoders.build_encoder`)."""
    return inference_batch(device.type == "cuda", int(getattr(model, "cpu_batch_size", 8)), tile_size)


def embed_date(
    model: nn.Module,
    grid: Grid,
    aligned: str | os.PathLike,
    fractions: np.ndarray,
    out_path: str | os.PathLike,
    min_valid: float,
    batch_size: int,
    device: torch.device,
    window_px: int = 1024,
    compile_model: bool = False,
    dtype: str = "float32",
    date: str | None = None,
) -> tuple[int, float]:
    """Embed all valid tiles of one aligned date into the Zarr store ``out_path`` (:mod:`landtaxa.learning.cube`);
    return the tiles embedded and the seconds it took.

    Each batch's embeddings go to the store as soon as they are encoded, and a chunk is written
    once complete, so the job holds a few windows and chunks, not the whole date. ``batch_size`` 0 picks
    the device's default
    (:func:`default_batch_size`); ``dtype`` is the storage type (float32 or float16).

    ``compile_model`` runs the encoder through ``torch.compile`` (worth it on a GPU for
    large dates; the first batches then pay the compilation time).
    """
    model.to(device).eval()
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    batch_size = batch_size or default_batch_size(device, model, grid.tile_size)
    z_dim = model.z_dim
    if compile_model:
        model = torch.compile(model)
    fill = bool(getattr(model, "fills_gaps", True))

    def encode_batch(tiles: np.ndarray) -> np.ndarray:
        nonlocal batch_size  # a batch halved for the GPU's memory stays halved
        emb, batch_size = encode_adaptive(model, tiles, batch_size, device)
        return emb

    return embed_windows(encode_batch, z_dim, grid, aligned, fractions, out_path, min_valid, batch_size, window_px,
                         dtype, date, fill)


def embed_step(*, grid: str, model: list[str], aligned: str, valid: str, out: list[str], date: str | None = None,
               params: EmbedParams, threads: int = 1) -> None:
    """Every valid tile of one aligned date embedded with each model, into one Zarr store per model (``out``, folders
    in the order of ``model``): the members of a model share the job, and its start (loading torch)."""
    if len(model) != len(out):
        raise ValueError(f"embed: {len(model)} models ({', '.join(model)}) but {len(out)} output stores")
    device = setup_torch(threads, params.device)
    g = Grid.load(grid)
    fractions = load_npz(valid)["fraction"]
    for path, store in zip(model, out, strict=True):
        encoder, meta = load_checkpoint(path, device)
        tiles, seconds = embed_date(encoder, g, aligned, fractions, store, min_valid=params.min_valid,
                                    batch_size=params.batch_size or 0, device=device, window_px=params.window_px,
                                    compile_model=params.compile, dtype=params.dtype, date=date)
        # the throughput, for the estimates' settings (compute.gpu_tflops / compute.cpu_gflops): reading included
        flops = tiles * tile_flops(encoder_costs(meta["encoder"]), g.tile_size) / max(seconds, 1e-9)
        log.info("%s: %d tiles in %.1f s on %s: %.3g GFLOP/s of the encoder, reading and writing included", path,
                 tiles, seconds, device, flops / 1e9)
        del encoder
