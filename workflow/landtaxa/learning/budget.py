"""What the encoder's work costs in time, and the training that fits a time budget.

An embedding or training job's time is the encoder's FLOPs (its :class:`~landtaxa.learning.encoders.EncoderCosts`)
at the throughput of the device it runs on, plus the work on the host that feeds it: a GPU's sustained
rate (config key ``compute.gpu_tflops``) or the CPU's per thread (``compute.cpu_gflops``) times the
job's threads. The jobs' requests (:mod:`landtaxa.resources`) and the training jobs use these same
functions, so a training job takes the time it asked for: :func:`fit_training` shrinks its epochs, then
its triplets, until its estimate fits its budget (``train.max_hours``, ``refine.max_hours``).

This module imports no torch: the workflow asks it questions where Snakemake runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from landtaxa.learning.encoders import EncoderCosts

# Host work per pixel and band of a tile, in seconds, on one core: reading it from the aligned mosaic
# (decoding) and scaling it, cutting the tiles and filling their gaps (embedding), or the float16 -> float32
# copy, the random flips and rotations and the copy to the device (training, per epoch).
EMBED_PREP_S = 40e-9
TRAIN_PREP_S = 5e-9
TILE_READ_S = 3e-3  # one triplet tile read alone from a mosaic (a window of a compressed GeoTIFF), besides its pixels


GPU_BATCH = 512  # tiles per inference batch on a GPU when embed.batch_size is null


def inference_batch(gpu: bool, cpu_batch_size: int, tile_size: int) -> int:
    """Tiles per inference batch when the config leaves it open.

    A GPU needs large batches to be kept busy (:data:`GPU_BATCH`). On a CPU what matters is that a batch's
    feature maps stay in the caches, so the batch holds about as many pixels as the encoder's best batch of
    100 px tiles (its ``cpu_batch_size``): the paper's TileNet runs best at 8 such tiles (measured on a 2-core
    machine: 15.6 tiles/s at 8, 10.5 at 64), tilenet-lite at 64, and smaller tiles take proportionally larger
    batches (TileNet on 16 px tiles: 168 tiles/s at 8, 331 at 312), up to 1024 tiles.
    """
    if gpu:
        return GPU_BATCH
    return int(min(1024, max(1, round(cpu_batch_size * (100 / tile_size) ** 2))))


def triplet_tiles_bytes(triplets: int, n_bands: int, tile_size: int) -> int:
    """Bytes of a training's triplet tiles as it keeps them (float16)."""
    return triplets * 3 * n_bands * tile_size**2 * 2


def device_flops(gpu: bool, threads: int, gpu_tflops: float, cpu_gflops: float) -> float:
    """FLOP/s of the encoder on the job's device: the GPU's sustained rate, or the CPU's per thread x threads."""
    return gpu_tflops * 1e12 if gpu else cpu_gflops * 1e9 * max(1, threads)


def tile_flops(costs: EncoderCosts, tile_size: int) -> float:
    """FLOPs of one forward pass on one tile (they scale with its pixels)."""
    return costs.gflop_100px * 1e9 * (tile_size / 100) ** 2


def embedding_seconds(costs: EncoderCosts, tile_size: int, n_bands: int, tiles: int, flops: float) -> float:
    """Seconds to embed ``tiles`` tiles: the encoder's FLOPs, plus reading and preparing their pixels."""
    return tiles * (tile_flops(costs, tile_size) / flops + tile_size**2 * n_bands * EMBED_PREP_S)


def _per_triplet(costs: EncoderCosts, tile_size: int, n_bands: int, flops: float) -> tuple[float, float]:
    """(seconds of one epoch of one triplet: 3 tiles forward and backward, about 3 forward passes each, and
    their preparation; seconds to read one triplet's tiles once)."""
    px = tile_size**2 * n_bands
    epoch = 3 * (3 * tile_flops(costs, tile_size) / flops + px * TRAIN_PREP_S)
    return epoch, 3 * (TILE_READ_S + px * EMBED_PREP_S)


def training_seconds(costs: EncoderCosts, tile_size: int, n_bands: int, triplets: int, epochs: int,
                     flops: float) -> float:
    """Seconds of a training job: its triplets' tiles read once, then ``epochs`` passes over them."""
    epoch, read = _per_triplet(costs, tile_size, n_bands, flops)
    return triplets * (read + epochs * epoch)


@dataclass(frozen=True)
class TrainingFit:
    """The training a budget allows: ``triplets`` x ``epochs`` taking about ``seconds``; ``note`` says what was cut."""

    triplets: int
    epochs: int
    seconds: float
    note: str

    @property
    def shrunk(self) -> bool:
        return bool(self.note)


def fit_training(costs: EncoderCosts, tile_size: int, n_bands: int, triplets: int, epochs: int,
                 max_hours: float | None, flops: float, where: str = "train") -> TrainingFit:
    """The most of ``triplets`` x ``epochs`` whose estimate fits ``max_hours`` at ``flops``: fewer epochs first
    (every triplet still seen), then, at one epoch, fewer triplets (at least 2). ``where`` names the config
    section in the note. ``max_hours`` None: no budget."""
    asked = training_seconds(costs, tile_size, n_bands, triplets, epochs, flops)
    if max_hours is None or asked <= max_hours * 3600:
        return TrainingFit(triplets, epochs, asked, "")
    budget = max_hours * 3600
    epoch, read = _per_triplet(costs, tile_size, n_bands, flops)
    fit_epochs = math.floor((budget / triplets - read) / epoch) if triplets else epochs
    if fit_epochs >= 1:
        fit_triplets = triplets
    else:
        fit_epochs, fit_triplets = 1, max(2, math.floor(budget / (read + epoch)))
    seconds = training_seconds(costs, tile_size, n_bands, fit_triplets, fit_epochs, flops)
    note = (f"{where}.max_hours {max_hours:.3g}: {epochs} epochs of {triplets:,} triplets would take about "
            f"{_hours(asked)} at {flops / 1e9:,.0f} GFLOP/s; training {fit_epochs} epoch(s) of "
            f"{fit_triplets:,} triplets instead (about {_hours(seconds)})")
    return TrainingFit(fit_triplets, fit_epochs, seconds, note)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds:.0f} s"
