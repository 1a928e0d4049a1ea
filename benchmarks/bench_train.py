"""A training step on small tiles, torch's way and landtaxa's, side by side in one run.

- torch's way: ``nn.Conv2d`` everywhere and Adam's default (foreach) update;
- landtaxa's way: ``landtaxa.learning.networks.Conv2d``, which computes a one-pixel output as the product
  of the input with the kernel's taps that meet it (TileNet's last stages on 16 px tiles), and Adam's
  fused update.

Both train the same network from the same weights with :func:`landtaxa.learning.train.train_triplets`
(one warm-up epoch, then ``--epochs`` timed), and embed the same tiles in eval mode. Default sizes are
the demo's (tilenet-lite, D = 512, 4 bands, 16 px tiles, batches of 64 triplets). Prints seconds per
training step and per 1,000 embedded tiles, with the ratios, and writes benchmarks/out/train.json.

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --encoder tilenet --threads 1 2 4
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "workflow"))

from landtaxa.learning.encoders import build_encoder  # noqa: E402
from landtaxa.learning.networks import Conv2d  # noqa: E402
from landtaxa.learning.train import train_triplets  # noqa: E402


def torch_way():
    """torch's convolution for every output size, and Adam without its fused kernel."""
    adam = functools.partial(torch.optim.Adam, fused=False)
    return mock.patch.multiple(Conv2d, _single_pixel_taps=lambda self, h, w: None), \
        mock.patch.object(torch.optim, "Adam", lambda *a, fused=None, **k: adam(*a, **k))


def measure(encoder: str, state: dict, tiles: np.ndarray, epochs: int, batch: int) -> dict:
    model = build_encoder(encoder, tiles.shape[2], state["z_dim"])
    model.load_state_dict(state["weights"])
    args = {"batch_size": batch, "lr": 1e-3, "betas": (0.5, 0.999), "margin": 10.0, "l2": 0.01, "seed": 0,
            "device": torch.device("cpu")}
    train_triplets(model, tiles[: 2 * batch], epochs=1, **args)  # warm-up: oneDNN's kernels, the allocator
    t0 = time.perf_counter()
    train_triplets(model, tiles, epochs=epochs, **args)
    steps = epochs * (len(tiles) // batch)
    step = (time.perf_counter() - t0) / steps
    flat = torch.from_numpy(tiles.reshape(-1, *tiles.shape[2:]).astype(np.float32))
    with torch.inference_mode():
        model(flat[:batch])
        t0 = time.perf_counter()
        for start in range(0, len(flat), 1024):
            model(flat[start : start + 1024])
        embed = (time.perf_counter() - t0) / len(flat) * 1000
    return {"step s": step, "embed s per 1000 tiles": embed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="tilenet-lite")
    p.add_argument("--z-dim", type=int, default=512)
    p.add_argument("--tile-size", type=int, default=16)
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--batch", type=int, default=64, help="triplets per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per epoch")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    rng = np.random.default_rng(0)
    tiles = rng.random((args.steps * args.batch, 3, args.bands, args.tile_size, args.tile_size)).astype(np.float16)
    torch.manual_seed(0)
    state = {"z_dim": args.z_dim, "weights": build_encoder(args.encoder, args.bands, args.z_dim).state_dict()}
    rows = []
    print(f"{args.encoder}, D={args.z_dim}, {args.bands} bands, {args.tile_size} px tiles, "
          f"{args.batch} triplets per step, {args.steps * args.epochs} timed steps:")
    for threads in args.threads:
        torch.set_num_threads(threads)
        patches = torch_way()
        with patches[0], patches[1]:
            theirs = measure(args.encoder, state, tiles, args.epochs, args.batch)
        ours = measure(args.encoder, state, tiles, args.epochs, args.batch)
        rows.append({"threads": threads, "torch": theirs, "landtaxa": ours})
        for key, unit in (("step s", "training step"), ("embed s per 1000 tiles", "embedding, per 1,000 tiles")):
            print(f"  {threads} thread(s), {unit:27s} torch {theirs[key]:7.3f} s   landtaxa {ours[key]:7.3f} s   "
                  f"ratio {theirs[key] / ours[key]:5.2f}x")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "train.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
