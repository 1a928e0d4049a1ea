"""Every step after embedding at growing region sizes: wall time and peak RSS, new code and old.

Writes synthetic embeddings (N tiles x T dates x D, default 24 x 512) straight to disk date by
date, in blocks, as the embedding jobs do (never the whole array in memory), then runs the
series, clustering (with its metrics), analysis (series PCA, graph, projections),
representatives, stability, evolution, map and kinds steps as separate processes, exactly as
the workflow does (``python -m landtaxa <step> ...``). The peak RSS of each process is its
``VmHWM`` as it exits (landtaxa.peaks, whichever revision of the code runs); Snakemake's
``benchmark:`` samples too rarely for that.

By default (``--cache cold``) every step starts with the embeddings dropped from the page cache
(written back, then ``POSIX_FADV_DONTNEED`` on every file; not timed), so that each size reads its
series from disk as a job on another node would: otherwise sizes up to the machine's memory are
measured from memory (the generator has just written them) and larger ones from disk, and the
growth per doubling measures the machine's RAM, not the code. ``--cache warm`` leaves the cache as
the previous step left it.

Where it still fits in memory (``--old-max`` tiles), the same data is run through the code as it
was before the chunked store (``--old-rev``, extracted with ``git archive``: per-date ``.npz``
embeddings, an in-memory series), side by side. At the end it prints, per step, the growth of
time and peak memory per doubling of N, and writes ``benchmarks/out/bench_scale.json``.

The grid is 625 tiles wide and N / 625 tiles high (1 px tiles, one small aligned raster per date
for the representatives' pictures). Tiles belong to K_TRUE overlapping kinds in a low-dimensional
latent space, so K-means needs a realistic number of iterations.

    python benchmarks/bench_scale.py                         # N = 31,250 ... 500,000 (float32 store)
    python benchmarks/bench_scale.py --sizes 31250 62500 --old-max 62500
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "workflow"))

from landtaxa.inputs.grid import Grid  # noqa: E402
from landtaxa.learning.cube import embedding_store  # noqa: E402
from landtaxa.peaks import run_step  # noqa: E402
from landtaxa.resources import MB, Sizes, job_needs  # noqa: E402

WIDTH = 625  # tiles per row of the synthetic grid
K_TRUE = 10
LATENT = 8
STEPS = ("series", "clusters", "analysis", "representatives", "stability", "evolution", "map", "kinds")


# --------------------------------------------------------------------------- synthetic data


def grid_of(n: int) -> Grid:
    rows = -(-n // WIDTH)
    return Grid(crs="EPSG:32630", transform=(10.0, 0.0, 400000.0, 0.0, -10.0, 4500000.0), width=WIDTH,
                height=rows, tile_size=1, bands=[1], dtype="uint16", scale_min=[0.0], scale_max=[1000.0])


def kinds_of(tile_ids: np.ndarray, rows: int) -> np.ndarray:
    """A kind per tile in patches of 25 x 25 tiles (a map with regions, as land has)."""
    r, c = np.divmod(tile_ids, WIDTH)
    patch = (r // 25) * (WIDTH // 25 + 1) + c // 25
    return (patch * 2654435761 % 2**32) % K_TRUE


def date_blocks(n: int, t: int, d: int, seed: int, rows_per_block: int = 16):
    """(tile ids, (m, D) float32 embeddings, valid mask) of date ``t``, block by block of tile rows."""
    grid = grid_of(n)
    rng_w = np.random.default_rng(seed)
    centres = rng_w.normal(0, 1.0, (K_TRUE, LATENT))
    weights = rng_w.normal(0, 1.0 / np.sqrt(LATENT), (LATENT, d)).astype(np.float32)
    drift = rng_w.normal(0, 0.5, (K_TRUE, LATENT))  # each kind changes over the dates
    rng = np.random.default_rng([seed, t])
    valid_date = validity(n, t, seed)
    for r0 in range(0, grid.n_rows, rows_per_block):
        ids = np.arange(r0 * WIDTH, min(n, (r0 + rows_per_block) * WIDTH))
        if len(ids) == 0:
            break
        kind = kinds_of(ids, grid.n_rows)
        phase = np.sin(2 * np.pi * t / 24)
        latent = centres[kind] + phase * drift[kind] + rng.normal(0, 0.8, (len(ids), LATENT))
        emb = latent.astype(np.float32) @ weights + rng.normal(0, 0.3, (len(ids), d)).astype(np.float32)
        yield ids, emb, valid_date[ids]


def validity(n: int, t: int, seed: int) -> np.ndarray:
    """(n_tiles,) bool: 2% of the tiles clouded on date ``t``."""
    return np.random.default_rng([seed, t, 1]).uniform(size=grid_of(n).n_tiles) > 0.02


def dates_of(t: int) -> list[str]:
    return [f"2023-{1 + i // 2:02d}-{1 + 14 * (i % 2):02d}" for i in range(t)]


def write_new(folder: Path, n: int, t: int, d: int, dtype: str, seed: int) -> list[Path]:
    grid = grid_of(n)
    paths = []
    for ti, date in enumerate(dates_of(t)):
        valid_all = validity(n, ti, seed)  # known before the strips, as in a run
        valid_all[n:] = False
        path = folder / f"{date}.zarr"
        with embedding_store(path, grid, d, valid_all, dtype, {"date": date}) as store:
            for ids, emb, valid in date_blocks(n, ti, d, seed):
                store.put(ids[valid], emb[valid])
        paths.append(path)
    return paths


def write_old(folder: Path, n: int, t: int, d: int, seed: int) -> list[Path]:
    grid = grid_of(n)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ti, date in enumerate(dates_of(t)):
        emb_all = np.full((grid.n_tiles, d), np.nan, np.float32)
        valid_all = np.zeros(grid.n_tiles, bool)
        for ids, emb, valid in date_blocks(n, ti, d, seed):
            emb_all[ids[valid]] = emb[valid]
            valid_all[ids] = valid
        valid_all[n:] = False
        path = folder / f"{date}.npz"
        np.savez(path, embeddings=emb_all, valid=valid_all, fraction=valid_all.astype(np.float32))
        paths.append(path)
    return paths


def write_aligned(folder: Path, n: int, t: int) -> list[Path]:
    import rasterio

    grid = grid_of(n)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for date in dates_of(t):
        path = folder / f"{date}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
                           dtype="uint16", crs=grid.crs, transform=grid.affine) as dst:
            dst.write(np.full((1, grid.height, grid.width), 500, np.uint16))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- measuring


def evict(folders: list[Path]) -> None:
    """Drop every file under ``folders`` from the page cache (``POSIX_FADV_DONTNEED``; no root needed), once
    written back to disk (the kernel keeps pages not yet written)."""
    if folders:
        os.sync()
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


COLD: list[Path] = []  # with --cache cold: the folders evicted from the page cache before each step


def run(args: list[str], code: Path, log: Path) -> tuple[float, float]:
    """Run the step ``args`` with the package in ``code``, as ``python -m landtaxa`` would: (seconds, peak RSS MB).
    With ``--cache cold`` the embeddings are first dropped from the page cache (not timed)."""
    evict(COLD)
    with open(log, "a") as err:
        err.write(f"\n$ landtaxa {' '.join(args)}\n")
        err.flush()
        try:
            record = run_step(args, log.with_name("peaks.jsonl"), {"PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"},
                              stderr=err)
        except RuntimeError as failed:
            raise RuntimeError(f"{failed}; see {log}") from None
    return record["seconds"], record["peak_mb"]


def pipeline(work: Path, embeddings: list[Path], dates: list[str], aligned: list[Path], code: Path, k: int,
             n_init: int, restarts: int, old: bool) -> dict[str, tuple[float, float]]:
    """Run every step once; {step: (seconds, peak MB)}."""
    g = work / "grid.json"
    s = work / "series.npz"
    c = work / f"k{k}.npz"
    ev = work / "evolution"
    an = work / "analysis"
    log = work / "steps.log"
    cluster = json.dumps({"n_init": n_init, "seed": 0})
    stab = json.dumps({"n_init": n_init, "restarts": restarts, "seed": 0})
    out = {}
    series_args = ["series", "--embeddings", *map(str, embeddings), "--dates", *dates, "--out", str(s),
                   "--params", '{"max_missing": 0.5}']
    # the clustering's distances to the centroids, from which the representatives are chosen (new code only)
    distances = [] if old else ["--distances", str(work / f"k{k}_distances.npz")]
    if not old:
        series_args += ["--cube", str(work / "series.zarr")]
    out["series"] = run(series_args, code, log)
    out["clusters"] = run(["clusters", "--grid", str(g), "--series", str(s), "--k", str(k), "--model", "geo",
                           "--out", str(c), "--metrics", str(work / f"k{k}.json"), "--threads", "2", *distances,
                           "--params", cluster], code, log)
    out["analysis"] = run(["analysis", "--grid", str(g), "--series", str(s), "--clusters", str(c), "--model", "geo",
                           "--out-dir", str(an), "--threads", "2", "--params", '{"seed": 0}'], code, log)
    out["representatives"] = run(["representatives", "--grid", str(g), "--series", str(s), "--clusters", str(c),
                                  *distances, "--aligned", *map(str, aligned), "--model", "geo", "--out-dir", str(an),
                                  "--params", '{"rgb_bands": null}'], code, log)
    out["stability"] = run(["stability", "--series", str(s), "--clusters", str(c), "--model", "geo",
                            "--out", str(an / "stability.json"), "--png", str(an / "stability.png"), "--threads", "2",
                            "--params", stab], code, log)
    out["evolution"] = run(["evolution", "--grid", str(g), "--series", str(s), "--clusters", str(c), "--model", "geo",
                            "--labels", str(ev / "labels.parquet"), "--out-dir", str(ev), "--params", "{}"], code, log)
    out["map"] = run(["map", "--grid", str(g), "--clusters", str(c), "--kinds", str(ev / "labels.parquet"),
                      "--model", "geo", "--tif", str(work / "map.tif"), "--png", str(work / "map.png"),
                      "--legend", str(work / "legend.png")], code, log)
    out["kinds"] = run(["kinds", "--grid", str(g), "--series", str(s), "--clusters", str(c), "--stability",
                        str(an / "stability.json"), "--kinds", str(ev / "labels.parquet"), "--model", "geo",
                        "--csv", str(work / "kinds.csv"), "--json", str(work / "kinds.json")], code, log)
    return out


def old_code(rev: str) -> Path:
    """The package (and the schema it reads) at commit ``rev``; the folder to put on PYTHONPATH."""
    folder = OUT / f"oldcode-{rev}"
    if not (folder / "workflow" / "landtaxa").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "workflow/landtaxa", "workflow/schemas"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "workflow"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[31250, 62500, 125000, 250000, 500000])
    ap.add_argument("--dates", type=int, default=24)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n-init", type=int, default=2)
    ap.add_argument("--restarts", type=int, default=1, help="analysis.restarts of the stability step")
    ap.add_argument("--dtype", default="float32", choices=["float16", "float32"],
                    help="storage of the embeddings (config key embed.dtype; its default: float32)")
    ap.add_argument("--old-max", type=int, default=62500, help="largest N also run through the old code")
    ap.add_argument("--old-rev", default="81573d6", help="the commit of the old code")
    ap.add_argument("--work", type=Path, default=OUT / "scale", help="scratch folder (removed per size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", choices=["cold", "warm"], default="cold",
                    help="cold: every step starts with the embeddings on disk only (dropped from the page cache), "
                         "as a job on another node would; warm: whatever the previous step left in the cache")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    json_path = OUT / "bench_scale.json"
    for n in a.sizes:
        work = a.work / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        grid = grid_of(n)
        dates = dates_of(a.dates)
        t0 = time.perf_counter()
        stores = write_new(work / "embeddings", n, a.dates, a.dim, a.dtype, a.seed)
        aligned = write_aligned(work / "aligned", n, a.dates)
        gen = time.perf_counter() - t0
        size = sum(f.stat().st_size for p in stores for f in p.rglob("*") if f.is_file())
        print(f"N={n:,}: {a.dates} dates x {a.dim} written as {a.dtype} in {gen:.0f} s, {size / 1e9:.2f} GB on disk",
              flush=True)
        runs = {"new": (work / "new", stores, ROOT / "workflow")}
        COLD[:] = [work / "embeddings", work / "old_embeddings"] if a.cache == "cold" else []
        if n <= a.old_max:
            runs["old"] = (work / "old", write_old(work / "old_embeddings", n, a.dates, a.dim, a.seed),
                           old_code(a.old_rev))
        labels = {}
        sizes = Sizes(n_tiles=grid.n_tiles, n_dates=a.dates, z_dim=a.dim, n_bands=1, tile_size=1, width=grid.width,
                      height=grid.height, store_itemsize=2 if a.dtype == "float16" else 4, k=a.k,
                      config={"cluster": {"n_init": a.n_init}, "analysis": {"restarts": a.restarts}})
        for code_name, (folder, embeddings, code) in runs.items():
            folder.mkdir(parents=True, exist_ok=True)
            grid.save(folder / "grid.json")
            steps = pipeline(folder, embeddings, dates, aligned, code, a.k, a.n_init, a.restarts,
                             old=code_name == "old")
            metrics = json.loads((folder / f"k{a.k}.json").read_text())
            labels[code_name] = np.load(folder / f"k{a.k}.npz")["labels"]
            for step, (secs, peak) in steps.items():
                estimate, est_secs, _ = job_needs(step, sizes)
                results.append({"n": n, "code": code_name, "step": step, "cache": a.cache, "seconds": round(secs, 2),
                                "peak_mb": round(peak, 1), "estimate_mb": round(estimate / MB),
                                "estimate_s": round(est_secs)})
                print(f"  {code_name:3} {step:16} {secs:8.1f} s {peak:9.0f} MB   (estimate {estimate / MB:.0f} MB, "
                      f"{est_secs:.0f} s)", flush=True)
            print(f"  {code_name:3} inertia {metrics['inertia']:.6g}, silhouette {metrics['silhouette']:.4f}",
                  flush=True)
        if "old" in labels:
            from sklearn.metrics import adjusted_rand_score

            same = int((labels["old"] == labels["new"]).sum())
            ari = adjusted_rand_score(labels["old"], labels["new"])
            results.append({"n": n, "code": "compare", "step": "labels", "equal": same, "of": len(labels["new"]),
                            "ari": ari})
            print(f"  labels old vs new: {same} of {len(labels['new'])} equal, ARI {ari:.6f}", flush=True)
        json_path.write_text(json.dumps(results, indent=1))
        for code_name, (folder, _, _) in runs.items():  # the steps' own logs (K-means passes, timings) outlive the data
            shutil.copy(folder / "steps.log", OUT / f"bench_scale_n{n}_{code_name}.log")
        shutil.rmtree(work / "old_embeddings", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    report(results, a.sizes)
    json_path.write_text(json.dumps(results, indent=1))


def report(results: list[dict], sizes: list[int]) -> None:
    print("\nwall time (s) and peak RSS (MB) per step; growth per doubling of N (time, memory):")
    head = "step".ljust(16) + "".join(f"{n:>22,}" for n in sizes)
    print(head)
    for code in ("new", "old"):
        for step in STEPS:
            cells = []
            for n in sizes:
                r = [x for x in results if x["n"] == n and x["code"] == code and x["step"] == step]
                cells.append(f"{r[0]['seconds']:>10.1f} s {r[0]['peak_mb']:>7.0f} MB" if r else " " * 22)
            if any(c.strip() for c in cells):
                print(f"{code} {step}".ljust(16) + "".join(cells))
    print("\ngrowth per doubling (new code): max over consecutive sizes of (ratio)^(1 / log2(N2 / N1))")
    for step in STEPS:
        rows = sorted((x for x in results if x["code"] == "new" and x["step"] == step), key=lambda x: x["n"])
        growth_t, growth_m = [], []
        for a, b in zip(rows, rows[1:], strict=False):
            doublings = np.log2(b["n"] / a["n"])
            growth_t.append((b["seconds"] / a["seconds"]) ** (1 / doublings))
            growth_m.append((b["peak_mb"] / a["peak_mb"]) ** (1 / doublings))
        if growth_t:
            print(f"  {step:16} time x{max(growth_t):.2f} (each: {', '.join(f'{g:.2f}' for g in growth_t)})   "
                  f"memory x{max(growth_m):.2f}")


if __name__ == "__main__":
    main()
