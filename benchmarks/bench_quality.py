"""Is the taxonomy worth a deep network, and does it depend on the machine? Every model over seeds and thread counts.

The protocol (issue 25): for each dataset the whole method runs for every seed (0-4 by default), each seed
twice, with torch at 1 thread and at 2 threads (training, refinement and embedding): a different order of
float reductions, as on another machine, which with about a hundred tiles sends training down another path.
Per dataset and model this prints the mean and sd over all those runs (10 by default) of the ARI against the
truth, and the agreement: the mean ARI between every pair of the runs' maps (over the tiles both hold). The
run's main map (metrics.json's ``main``) is scored the same way, as the row ``main``. On the demo each run also
says how each model's change maps see the clear-cut: the share of the cut's tiles that change kind on its date
against the share of the other tiles (the evolution step's per-date kinds, from the run's series and clusters),
and the number of runs in which the cut stands out (at least half its tiles, and three times the others' share).
A change of setting is
an improvement only when its gain exceeds two standard errors of the difference (``--compare`` a previous
run's benchmarks/out/quality.json to have it said).

Datasets:
- ``demo``: the built-in demo (its region stays put while the method's seed varies);
- ``slovenia``: the real Slovenia NDVI series of ../shared/data, the 36 acquisitions with at least 80 % valid
  pixels, IS_VALID masks, 10 px tiles, K = 4, each tile scored against the majority land use of its pixels;
- ``l1c``: the same place's 5 full-band Sentinel-2 L1C scenes as RGB + NIR (bands 4, 3, 2, 8), IS_VALID
  masks (two dates are clouded over and kept, filled from their nearest date), 10 px tiles, K = 4: a second
  real series that no default was tuned on.

The seed-independent work (the demo's images, the grid, the alignment, the truth, the baselines' embeddings)
runs once per dataset in a prepared folder that every run starts from (a copy, Snakemake's records included),
and each run stops at results/metrics.json (no maps or analysis). The two 1-thread runs of a pair of seeds run
side by side (1 core each); the 2-thread runs one at a time. Writes benchmarks/out/quality.json.

    python benchmarks/bench_quality.py                                 # demo, slovenia and l1c, the protocol
    python benchmarks/bench_quality.py --data slovenia --seeds 0 1 --threads 2
    python benchmarks/bench_quality.py --set refine.lr=1e-4 --compare benchmarks/out/quality.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
import yaml
from sklearn.metrics import adjusted_rand_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "workflow"))  # the workflow runner the tests use

from runner import Snakemake  # noqa: E402

sys.path.insert(0, str(ROOT / "workflow"))
from landtaxa.clustering.series import Series  # noqa: E402
from landtaxa.inputs.demo.spec import DemoSpec, change_index  # noqa: E402
from landtaxa.products.evolution import changes, per_date_labels  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
SLOVENIA = ROOT.parent / "shared" / "data" / "slovenia-s2-ndvi" / "geotiff"
TORCH_RULES = ("train", "refine", "embed")


def slovenia_archive(folder: Path, min_valid: float = 0.8) -> dict:
    """Per-date NDVI and IS_VALID GeoTIFFs of the acquisitions at least ``min_valid`` clear, in a sheet."""
    rows = ["date\tgranule\tpath\tmask"]
    with rasterio.open(SLOVENIA / "NDVI_68dates.tif") as ndvi, rasterio.open(SLOVENIA / "IS_VALID_68dates.tif") as ok:
        seen = set()
        for b, when in enumerate(ndvi.descriptions, start=1):
            valid = ok.read(b)
            if valid.mean() < min_valid or when[:10] in seen:
                continue
            seen.add(when[:10])
            for name, src, data in (("ndvi", ndvi, ndvi.read(b)), ("valid", ok, valid)):
                path = folder / name / f"{when[:10]}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(path, "w", **{**src.profile, "count": 1}) as dst:
                    dst.write(data, 1)
            day = when[:10]
            rows.append(f"{day}\ts2\t{folder / 'ndvi' / f'{day}.tif'}\t{folder / 'valid' / f'{day}.tif'}")
    (folder / "images.tsv").write_text("\n".join(rows) + "\n")
    return {"images": str(folder / "images.tsv"), "truth": str(SLOVENIA / "LULC.tif"), "tile_size": 10,
            "masks": {"invalid": [0]}, "n_clusters": 4}


def l1c_archive(folder: Path) -> dict:
    """The 5 full-band L1C scenes (B04, B03, B02, B08 used) with the IS_VALID mask of their dates, in a sheet."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["date\tgranule\tpath\tmask"]
    with rasterio.open(SLOVENIA / "IS_VALID_68dates.tif") as ok:
        band = {d[:10]: b for b, d in enumerate(ok.descriptions, start=1)}
        for tif in sorted(SLOVENIA.glob("S2L1C_13bands_*.tif")):
            day = tif.stem.split("_")[-1]
            mask = folder / f"valid_{day}.tif"
            with rasterio.open(mask, "w", **{**ok.profile, "count": 1}) as dst:
                dst.write(ok.read(band[day]), 1)
            rows.append(f"{day}\ts2\t{tif}\t{mask}")
    (folder / "images.tsv").write_text("\n".join(rows) + "\n")
    return {"images": str(folder / "images.tsv"), "truth": str(SLOVENIA / "LULC.tif"), "tile_size": 10,
            "masks": {"invalid": [0]}, "n_clusters": 4, "bands": [4, 3, 2, 8], "empty_dates": "keep"}


DATASETS = {"demo": lambda folder: {}, "slovenia": slovenia_archive, "l1c": l1c_archive}


def snakemake(work: Path, config: Path, targets: list[str], cores: int, threads: int | None = None) -> float:
    """One workflow run of ``config`` (over config/config.yaml) in ``work`` up to ``targets``; its wall time."""
    per_rule = ["--set-threads", *(f"{rule}={threads}" for rule in TORCH_RULES)] if threads else []
    cmd = Snakemake().command(work, *targets, "--cores", str(cores), "--quiet", *per_rule, configs=[config])
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"workflow failed in {work}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def prepare(data: str, extra: dict, folder: Path) -> tuple[Path, dict]:
    """The dataset's config and a results folder holding the seed-independent work, from which every run starts."""
    config = merged(DATASETS[data](folder / "archive"), extra)
    prep = folder / "prepared"
    prep.mkdir(parents=True, exist_ok=True)
    (prep / "run.yaml").write_text(json.dumps(config))
    k = config.get("n_clusters", 7)
    k = k[0] if isinstance(k, list) else k
    targets = [f"results/series/{m}.npz" for m in ("spectral", "means")] + ["results/grid.json"]
    if config.get("truth", "demo"):
        targets.append("results/truth_tiles.npz")
    snakemake(prep, prep / "run.yaml", targets, cores=2)
    return prep, {**config, "_k": k}


def one_run(prep: Path, config: dict, seed: int, threads: int, cores: int, work: Path, demo: bool = False) -> dict:
    """A copy of the prepared folder run to metrics.json with ``seed`` and torch at ``threads``: scores and maps."""
    shutil.copytree(prep, work, symlinks=True)
    run_config = {key: v for key, v in config.items() if not key.startswith("_")}
    (work / "run.yaml").write_text(json.dumps(merged(run_config, {"seed": seed})))
    wall = snakemake(work, work / "run.yaml", ["results/metrics.json"], cores=cores, threads=threads)
    metrics = json.loads((work / "results/metrics.json").read_text())
    k = config["_k"]
    models = [m for m in metrics if m != "main"]
    maps = {m: labels_of(work, m, k) for m in models}
    main = metrics["main"]["model"]
    scores = {m: metrics[m].get("ari", float("nan")) for m in models}
    scores["main"], maps["main"] = scores[main], maps[main]
    agree = {m: metrics[m]["seed_agreement"] for m in models if "seed_agreement" in metrics[m]}
    run = {"seed": seed, "threads": threads, "wall": wall, "ari": scores, "maps": maps, "main": main,
           "members_agree": agree}
    if demo:
        chain_end = "refined" if "refined" in models else "geo"  # the model whose members the consensus combines
        run["clear_cut"] = {m: clear_cut(work, m, k, chain_end) for m in models}
        run["clear_cut"]["main"] = run["clear_cut"][main]
    return run


def clear_cut(work: Path, model: str, k: int, consensus_of: str) -> list[float]:
    """The demo's clear-cut (truth class 7) in a model's change maps: [share of the cut's tiles that change kind
    on its date, share of the other tiles that do] (the evolution step's per-date kinds, default merge_overlap)."""
    series = Series(work / f"results/series/{consensus_of if model == 'consensus' else model}.npz")
    with np.load(work / f"results/clusters/{model}/k{k}.npz") as c:
        tile_ids, labels, centroids = c["tile_ids"], c["labels"], c["centroids"]
    if not np.array_equal(tile_ids, series.tile_ids):
        raise RuntimeError(f"{work}: the {model} clusters and their series hold different tiles")
    with np.load(work / "results/truth_tiles.npz") as t:
        cut = t["classes"][tile_ids] == 7
    changed = changes(per_date_labels(series, centroids, labels)[1])[:, change_index(DemoSpec()) - 1]
    return [float(changed[cut].mean()), float(changed[~cut].mean())]


def stands_out(shares: list[float]) -> bool:
    return shares[0] >= 0.5 and shares[0] >= 3 * shares[1]


def labels_of(work: Path, model: str, k: int) -> dict[int, int]:
    with np.load(work / f"results/clusters/{model}/k{k}.npz") as c:
        return dict(zip(c["tile_ids"].tolist(), c["labels"].tolist(), strict=True))


def agreement(maps: list[dict[int, int]]) -> float:
    """Mean ARI between every pair of label maps, over the tiles both hold."""
    scores = []
    for a, b in itertools.combinations(maps, 2):
        common = sorted(set(a) & set(b))
        scores.append(adjusted_rand_score([a[t] for t in common], [b[t] for t in common]))
    return float(np.mean(scores)) if scores else float("nan")


def merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def settings(pairs: list[str]) -> dict:
    """``a.b=value`` pairs (values read as YAML) as a nested config overlay."""
    out: dict = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return out


def bench(data: str, seeds: list[int], threads: list[int], extra: dict, keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"landtaxa-quality-{data}-") as tmp:
        folder = (keep or Path(tmp)) / data
        prep, config = prepare(data, extra, folder)
        runs = []
        for t in sorted(threads):
            # 1-thread runs two at a time (one core each), 2-thread runs one at a time: the machine's 2 cores
            side = max(1, 2 // t)
            with ThreadPoolExecutor(side) as pool:
                jobs = [pool.submit(one_run, prep, config, s, t, max(1, 2 // side), folder / f"seed{s}-t{t}",
                                    data == "demo") for s in seeds]
                for job in jobs:
                    r = job.result()
                    runs.append(r)
                    print(f"{data} seed {r['seed']} torch x{r['threads']}: {r['wall']:.0f} s, main {r['main']}, "
                          + "  ".join(f"{m} {v:.3f}" for m, v in r["ari"].items()), flush=True)
                    if "clear_cut" in r:
                        print("  clear-cut changes on its date (cut / others): " + "  ".join(
                            f"{m} {a:.2f}/{b:.2f}" for m, (a, b) in r["clear_cut"].items()), flush=True)
    models = list(runs[0]["ari"])
    out: dict = {"runs": [{k: v for k, v in r.items() if k != "maps"} for r in runs]}
    for m in models:
        values = [r["ari"][m] for r in runs]
        out[m] = {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "n": len(values), "agreement": agreement([r["maps"][m] for r in runs])}
        if "clear_cut" in runs[0]:
            out[m]["clear_cut_stands_out"] = sum(stands_out(r["clear_cut"][m]) for r in runs)
    out["wall_seconds"] = statistics.mean(r["wall"] for r in runs)
    return out


def compare(now: dict, before: dict, data: str) -> list[str]:
    """Per model: the gain in mean ARI and whether it exceeds two standard errors of the difference."""
    lines = []
    for m, r in now.get(data, {}).items():
        b = before.get(data, {}).get(m)
        if not isinstance(r, dict) or "mean" not in r or not isinstance(b, dict):
            continue
        se = math.sqrt(r["sd"] ** 2 / r["n"] + b["sd"] ** 2 / b["n"])
        gain = r["mean"] - b["mean"]
        verdict = "better" if gain > 2 * se else "worse" if gain < -2 * se else "within the spread"
        lines.append(f"{data} {m:10} {b['mean']:.3f} -> {r['mean']:.3f}  gain {gain:+.3f}, "
                     f"2 SE {2 * se:.3f}: {verdict}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="torch threads of each seed's runs")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config settings for every run")
    p.add_argument("--keep", type=Path, help="keep the runs' folders under this folder")
    p.add_argument("--compare", type=Path, help="a previous quality.json: the gains and their two standard errors")
    p.add_argument("--out", type=Path, default=OUT / "quality.json")
    args = p.parse_args()
    extra = settings(args.set)
    result: dict = {"seeds": args.seeds, "threads": args.threads, "settings": extra}
    for data in args.data:
        result[data] = bench(data, args.seeds, args.threads, extra, args.keep)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nARI over seeds {args.seeds} x torch threads {args.threads}" + (f", settings {extra}" if extra else ""))
    print(f"{'':20}{'mean':>8}{'sd':>8}{'agreement':>11}{'n':>4}")
    for data in args.data:
        for m, r in result[data].items():
            if isinstance(r, dict) and "mean" in r:
                cut = f"   clear-cut stands out in {r['clear_cut_stands_out']} of {r['n']}" \
                    if "clear_cut_stands_out" in r else ""
                print(f"{f'{data} {m}':20}{r['mean']:8.3f}{r['sd']:8.3f}{r['agreement']:11.3f}{r['n']:4d}{cut}")
        print(f"{f'{data} wall s':20}{result[data]['wall_seconds']:8.0f}  (a run from the prepared folder)")
    if args.compare:
        before = json.loads(args.compare.read_text())
        print(f"\nagainst {args.compare} (settings {before.get('settings')}):")
        for data in args.data:
            print("\n".join(compare(result, before, data)))


if __name__ == "__main__":
    main()
