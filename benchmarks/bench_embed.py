"""Embedding and training throughput, and the throughput settings the workflow's estimates use.

Embedding: landtaxa's pipeline vs a one-tile-at-a-time loop, same model. Both read an aligned raster,
scale the pixels and encode every tile; the pipeline reads windows of tiles and encodes in batches
(bf16 autocast on CUDA), the baseline reads and encodes one tile per step, as a per-tile notebook loop
does. Prints tiles/s side by side and the ratio, and the pipeline's time next to the workflow's
estimate for it (landtaxa.learning.budget).

The encoder alone, as the jobs run it (bf16 autocast on CUDA, float32 on a CPU): tiles in memory
encoded in batches, and triplet batches trained (forward and backward, Adam), in FLOP/s. Their
smaller is the sustained rate the workflow's time estimates and training budgets assume: the script
prints the config line to set (``compute.gpu_tflops`` on a GPU, ``compute.cpu_gflops`` per thread on a
CPU) next to the current default, and (on CUDA, given --peak-tflops) the fraction of the GPU's peak.
Writes benchmarks/out/embed_<encoder>_<device>.json.

    python benchmarks/bench_embed.py                                   # CPU, the paper's 100 px tiles
    python benchmarks/bench_embed.py --device cuda --size 10980 --peak-tflops 989   # on a GPU node
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from landtaxa.inputs.grid import Grid  # noqa: E402
from landtaxa.learning.budget import device_flops, embedding_seconds  # noqa: E402
from landtaxa.learning.embed import default_batch_size, embed_date, encode  # noqa: E402
from landtaxa.learning.encoders import build_encoder, encoder_costs  # noqa: E402
from landtaxa.learning.networks import pick_device  # noqa: E402
from landtaxa.learning.train import train_triplets  # noqa: E402
from landtaxa.params import schema_property  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


def write_aligned(path: Path, size: int, bands: int, tile: int) -> Grid:
    rng = np.random.default_rng(0)
    grid = Grid(crs="EPSG:32630", transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4700000.0), width=size,
                height=size, tile_size=tile, bands=list(range(1, bands + 1)), dtype="uint16",
                scale_min=[0.0] * bands, scale_max=[10000.0] * bands)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": bands, "dtype": "uint16",
               "crs": grid.crs, "transform": grid.affine, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate"}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 256):
            h = min(256, size - r0)
            dst.write(rng.integers(0, 10000, (bands, h, size), dtype=np.uint16), window=Window(0, r0, size, h))
        dst.write_mask(np.full((size, size), 255, np.uint8))
    return grid


def flops_per_tile(model: torch.nn.Module, bands: int, tile: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, bands, tile, tile)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.cpu()(x)
    return float(counter.get_total_flops())


@torch.inference_mode()
def one_tile_loop(model, grid: Grid, path: Path, device: torch.device, limit: int) -> tuple[int, float]:
    """The baseline: for each tile, read its window, scale, encode alone."""
    model.to(device).eval()
    t0 = time.perf_counter()
    out = []
    with rasterio.open(path) as src:
        for tile_id in range(min(limit, grid.n_tiles)):
            x = grid.scale(src.read(window=grid.tile_window(tile_id)))
            z = model(torch.from_numpy(x)[None].to(device))
            out.append(z.cpu().numpy())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(out), time.perf_counter() - t0


def encoder_rates(model, device: torch.device, bands: int, tile: int, batch: int, train_batch: int,
                  seconds: float) -> tuple[float, float]:
    """(tiles/s encoded, triplets/s trained) by the encoder alone, on tiles in memory, for about ``seconds`` each
    (after a warm-up: cuDNN's autotuning, the allocator)."""
    rng = np.random.default_rng(0)
    tiles = rng.uniform(0, 1, (batch, bands, tile, tile)).astype(np.float32)
    encode(model, tiles, batch, device)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        encode(model, tiles, batch, device)
        n += batch
    if device.type == "cuda":
        torch.cuda.synchronize()
    encoded = n / (time.perf_counter() - t0)
    triplets = rng.uniform(0, 1, (train_batch * 4, 3, bands, tile, tile)).astype(np.float16)
    kwargs = {"batch_size": train_batch, "lr": 1e-4, "betas": (0.5, 0.999), "margin": 10.0, "l2": 0.01, "seed": 0,
              "device": device}
    train_triplets(model, triplets[:train_batch], epochs=1, **kwargs)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        train_triplets(model, triplets, epochs=1, **kwargs)
        n += len(triplets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return encoded, n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1000, help="region side in px")
    p.add_argument("--tile-size", type=int, default=100)
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--encoder", default="tilenet")
    p.add_argument("--z-dim", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=0, help="0: landtaxa's default for the device")
    p.add_argument("--train-batch", type=int, default=64, help="triplets per training batch (train.batch_size)")
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time of the encoder alone, per test")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="auto")
    p.add_argument("--baseline-tiles", type=int, default=100, help="tiles the slow baseline encodes")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak (bf16 on CUDA) for the fraction")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = pick_device(args.device)
    model = build_encoder(args.encoder, args.bands, args.z_dim).eval()
    flops = flops_per_tile(model, args.bands, args.tile_size)
    batch = args.batch_size or default_batch_size(device, model, args.tile_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "aligned.tif"
        grid = write_aligned(path, args.size, args.bands, args.tile_size)
        fractions = np.ones((grid.n_rows, grid.n_cols), np.float32)
        # warm-up (cuDNN autotuning, allocator) on a small part, then the measured runs
        one_tile_loop(model, grid, path, device, 4)
        n_base, s_base = one_tile_loop(model, grid, path, device, args.baseline_tiles)
        t0 = time.perf_counter()
        embed_date(model, grid, path, fractions, Path(tmp) / "emb.zarr", min_valid=0.5,
                   batch_size=args.batch_size, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        s_pipe = time.perf_counter() - t0
    encoded, trained = encoder_rates(model, device, args.bands, args.tile_size, batch, args.train_batch, args.seconds)
    gpu = device.type != "cpu"
    # the sustained rate of the encoder: embedding's forward passes, training's 3 tiles x (forward + backward)
    rate = min(encoded * flops, trained * 9 * flops)
    key = "compute.gpu_tflops" if gpu else "compute.cpu_gflops"
    value = rate / 1e12 if gpu else rate / 1e9 / args.threads
    default = schema_property(key)["default"]
    costs = encoder_costs(args.encoder)
    estimate = embedding_seconds(costs, args.tile_size, args.bands, grid.n_tiles,
                                 device_flops(gpu, args.threads, default if gpu else 0, default if not gpu else 0))
    pipe_rate, base_rate = grid.n_tiles / s_pipe, n_base / s_base
    result = {
        "device": str(device), "encoder": args.encoder, "tile_size": args.tile_size, "bands": args.bands,
        "z_dim": args.z_dim, "batch_size": batch, "threads": args.threads,
        "gflop_per_tile": flops / 1e9, "pipeline_tiles": grid.n_tiles, "pipeline_tiles_per_s": pipe_rate,
        "region_px": args.size, "seconds_per_date": s_pipe, "estimated_seconds_at_default": estimate,
        "one_tile_loop_tiles": n_base, "one_tile_loop_tiles_per_s": base_rate, "ratio": pipe_rate / base_rate,
        "encoder_tiles_per_s": encoded, "encoder_tflops": encoded * flops / 1e12,
        "training_triplets_per_s": trained, "training_tflops": trained * 9 * flops / 1e12,
        "setting": {key: round(value, 1)},
    }
    if args.peak_tflops:
        result["fraction_of_peak"] = rate / (args.peak_tflops * 1e12)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"embed_{args.encoder}_{device.type}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.encoder}, {args.tile_size} px tiles, {args.bands} bands, {flops / 1e9:.2f} GFLOP/tile, {device}, "
          f"batch {batch}, {args.threads} threads")
    print(f"{'':22}{'tiles':>8}{'tiles/s':>10}")
    print(f"{'landtaxa pipeline':22}{grid.n_tiles:>8}{pipe_rate:>10.1f}")
    print(f"{'one-tile loop':22}{n_base:>8}{base_rate:>10.1f}")
    print(f"ratio x{result['ratio']:.2f}")
    print(f"one date of a {args.size} x {args.size} px region (read + scale + infer + write): {s_pipe:.1f} s; "
          f"the workflow's estimate at the default {key} {default:g}: {estimate:.1f} s")
    print(f"encoder alone: {encoded:.1f} tiles/s embedded = {encoded * flops / 1e12:.3f} TFLOP/s; "
          f"{trained:.1f} triplets/s trained = {trained * 9 * flops / 1e12:.3f} TFLOP/s")
    line = f"set {key}: {value:.1f} in your config (the default is {default:g})"
    if "fraction_of_peak" in result:
        line += f"; {100 * result['fraction_of_peak']:.1f}% of {args.peak_tflops:.0f} TFLOP/s"
    print(line)


if __name__ == "__main__":
    main()
