"""A baseline's embedding job: band statistics in numpy (``embed_baseline``) vs the same features through
the encoder path (``embed`` with the baseline's checkpoint, which loads torch), each as the workflow runs it,
its own process.

On one date of a region the size of a demo date (512 x 512 px, 4 bands, 16 px tiles: 1,024 tiles), both jobs
write the same store; the figures are the process's wall and CPU seconds (median of ``--repeat`` runs, the
imports included, as a run pays them once per baseline and date), side by side with their ratio. Writes
benchmarks/out/baselines.json.

    python benchmarks/bench_baselines.py
    python benchmarks/bench_baselines.py --size 2048 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "workflow"))

from landtaxa.inputs.grid import Grid  # noqa: E402
from landtaxa.learning.cube import read_embeddings  # noqa: E402
from landtaxa.learning.encoders import build_encoder, save_checkpoint  # noqa: E402


def region(folder: Path, size: int, tile: int, bands: int) -> dict[str, str]:
    """A grid, one aligned date (random reflectances, a quarter of it masked) and its valid fractions."""
    grid = Grid(crs="EPSG:32630", transform=(10.0, 0.0, 400000.0, 0.0, -10.0, 4500000.0), width=size, height=size,
                tile_size=tile, bands=list(range(1, bands + 1)), dtype="uint16", scale_min=[0.0] * bands,
                scale_max=[10000.0] * bands)
    grid.save(folder / "grid.json")
    rng = np.random.default_rng(0)
    mask = rng.random((size, size)) > 0.25
    with rasterio.open(folder / "date.tif", "w", driver="GTiff", width=size, height=size, count=bands,
                       dtype="uint16", crs=grid.crs, transform=grid.affine, tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        dst.write(rng.integers(1, 10000, (bands, size, size), dtype=np.uint16))
        dst.write_mask((mask * 255).astype(np.uint8))
    fraction = mask.reshape(grid.n_rows, tile, grid.n_cols, tile).mean(axis=(1, 3)).astype(np.float32)
    np.savez(folder / "valid.npz", fraction=fraction)
    model = build_encoder("spectral", bands, 0)
    save_checkpoint(folder / "spectral.pt", model, {"encoder": "spectral", "in_channels": bands,
                                                    "z_dim": model.z_dim, "tile_size": tile, "kind": "untrained"})
    return {"grid": str(folder / "grid.json"), "aligned": str(folder / "date.tif"), "valid": str(folder / "valid.npz")}


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``python -m landtaxa <args>`` in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "landtaxa", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="region side in pixels")
    ap.add_argument("--tile", type=int, default=16, help="tile side in pixels")
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = region(folder, a.size, a.tile, a.bands)
        common = ["--grid", files["grid"], "--aligned", files["aligned"], "--valid", files["valid"]]
        jobs = {"embed_baseline (numpy)": ["embed_baseline", *common, "--encoder", "spectral"],
                "embed (torch, the encoder path)": ["embed", *common, "--model", str(folder / "spectral.pt"),
                                                    "--params", '{"device": "cpu"}']}
        figures, stores = {}, {}
        for name, args in jobs.items():
            runs = []
            for i in range(a.repeat):
                out = folder / f"{args[0]}{i}.zarr"
                runs.append(timed([*args, "--out", str(out)], folder))
            stores[name] = read_embeddings(out)["embeddings"]
            figures[name] = {"wall_s": statistics.median(r[0] for r in runs),
                             "cpu_s": statistics.median(r[1] for r in runs)}
        light, heavy = figures.values()
        same = np.allclose(*stores.values(), rtol=1e-6, atol=1e-7, equal_nan=True)
        n_tiles = (a.size // a.tile) ** 2
        print(f"one date, {n_tiles} tiles of {a.tile} px, {a.bands} bands; median of {a.repeat} runs")
        print(f"{'job':34s} {'wall s':>8s} {'CPU s':>8s}")
        for name, f in figures.items():
            print(f"{name:34s} {f['wall_s']:8.2f} {f['cpu_s']:8.2f}")
        print(f"ratio (encoder path / numpy): wall {heavy['wall_s'] / light['wall_s']:.1f}x, "
              f"CPU {heavy['cpu_s'] / light['cpu_s']:.1f}x; same features: {same}")
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "baselines.json").write_text(json.dumps({"size": a.size, "tile": a.tile, "bands": a.bands,
                                                        "figures": figures, "same": bool(same)}, indent=1))
        if not same:
            raise SystemExit("the two jobs wrote different features")


if __name__ == "__main__":
    main()
