"""Peak memory of alignment + embedding: bounded by the block size, not by the region.

Writes a synthetic region (two overlapping uint16 granules, 4 bands) on 4 dates at two
sizes (default 5,793^2 and 8,192^2 px: twice the area), runs the grid, alignment and
embedding steps as separate processes exactly as the workflow does, and reads each
process's peak RSS from the kernel (os.wait4). Prints the largest peak per step for both
sizes side by side and writes benchmarks/out/memory.json. The encoder is tilenet-lite so
that the run takes minutes on a CPU; memory does not depend on the encoder's FLOPs.

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --sizes 8192 16384 --block-rows 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
# as the workflow runs the steps: GDAL's block cache capped (config key gdal_cache_mb)
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "GDAL_CACHEMAX": "256"}


def write_granule(path: Path, width: int, height: int, x0: float, y0: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 4, "dtype": "uint16",
               "crs": "EPSG:32630", "transform": rasterio.Affine(10, 0, x0, 0, -10, y0), "nodata": 0,
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    row = rng.integers(1, 10000, (4, 512, width), dtype=np.uint16)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, 512):
            h = min(512, height - r0)
            dst.write(row[:, :h], window=Window(0, r0, width, h))


def run(args: list[str]) -> tuple[float, float]:
    """Run ``python -m landtaxa ARGS``; return (seconds, peak RSS MB) of that process alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "landtaxa", *args], env=ENV, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"landtaxa {args[0]} failed ({status})")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def measure(size: int, dates: int, tile: int, block_rows: int, tmp: Path) -> dict:
    g = size // 2 + 256  # two granules side by side, overlapping by 512 px
    paths = {}
    for d in range(dates):
        for i, x0 in enumerate((500000.0, 500000.0 + (size - g) * 10)):
            p = tmp / f"2023-0{d + 1}-01_g{i}.tif"
            write_granule(p, g, size, x0, 4700000.0, seed=d * 2 + i)
            paths.setdefault(d, []).append(str(p))
    grid = tmp / "grid.json"
    steps: dict[str, list[tuple[float, float]]] = {"grid": [], "align": [], "embed": []}
    steps["grid"].append(run(["grid", "--images", *paths[0], "--tile-size", str(tile), "--out", str(grid)]))
    model = tmp / "lite.pt"
    subprocess.run([sys.executable, "-c", (
        "import sys; sys.path.insert(0, sys.argv[2]); import torch; "
        "from landtaxa.learning.encoders import build_encoder, save_checkpoint; "
        "torch.manual_seed(0); "
        "save_checkpoint(sys.argv[1], build_encoder('tilenet-lite', 4, 64), "
        "{'encoder': 'tilenet-lite', 'in_channels': 4, 'z_dim': 64})"), str(model), str(ROOT / "workflow")],
        check=True)
    for d in range(dates):
        aligned, valid = tmp / f"aligned{d}.tif", tmp / f"valid{d}.npz"
        steps["align"].append(run(["align", "--grid", str(grid), "--images", *paths[d], "--out", str(aligned),
                                   "--valid", str(valid), "--block-rows", str(block_rows)]))
        steps["embed"].append(run(["embed", "--grid", str(grid), "--model", str(model), "--aligned", str(aligned),
                                   "--valid", str(valid), "--out", str(tmp / f"emb{d}.npz"),
                                   "--block-rows", str(block_rows), "--threads", str(os.cpu_count() or 1)]))
        aligned.unlink()
        for f in paths[d]:
            Path(f).unlink()
    return {step: {"max_rss_mb": max(r for _, r in v), "seconds": sum(s for s, _ in v)} for step, v in steps.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5793, 8192])
    p.add_argument("--dates", type=int, default=4)
    p.add_argument("--tile-size", type=int, default=128)
    p.add_argument("--block-rows", type=int, default=4)
    args = p.parse_args()
    results = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="landtaxa-mem-") as tmp:
            results[size] = measure(size, args.dates, args.tile_size, args.block_rows, Path(tmp))
        print(f"{size} px done: {results[size]}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "memory.json").write_text(json.dumps({"dates": args.dates, "tile_size": args.tile_size,
                                                 "block_rows": args.block_rows, "results": results}, indent=2))
    print(f"{args.dates} dates, tiles of {args.tile_size} px, block of {args.block_rows} tile rows; peak RSS MB")
    print(f"{'step':8}" + "".join(f"{f'{s}^2 px':>14}" for s in args.sizes) + f"{'ratio':>8}")
    for step in ("grid", "align", "embed"):
        vals = [results[s][step]["max_rss_mb"] for s in args.sizes]
        print(f"{step:8}" + "".join(f"{v:>14.0f}" for v in vals) + f"{vals[-1] / vals[0]:>8.2f}")
    print(f"area ratio {args.sizes[-1] ** 2 / args.sizes[0] ** 2:.2f}")


if __name__ == "__main__":
    main()
