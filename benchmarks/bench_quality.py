"""Is the taxonomy worth a deep network? Every model against the spectral baseline, over seeds, in one run.

For each dataset (the built-in demo, whose region stays fixed while the method's seed varies, and
the real Slovenia NDVI series of ../shared/data with its land-use reference), the whole workflow
runs once per seed (0, 1, 2 by default) with the config's defaults, and this prints, per model
(spectral, geo, refined), mean +- sd over the seeds of: ARI and NMI against the truth, silhouette
in embedding space, geographic silhouette, the agreement between the seeds' maps (mean ARI
between every pair of seeds' labels, over the tiles both hold) and the wall time of a run.
Writes benchmarks/out/quality.json.

The Slovenia series here is the 36 acquisitions with at least 80 % valid pixels, its IS_VALID
masks, 10 px tiles and K = 4, each tile scored against the majority land use of its pixels.

    python benchmarks/bench_quality.py                       # demo and Slovenia, seeds 0-2
    python benchmarks/bench_quality.py --data slovenia --seeds 0 1 2 3 4
    python benchmarks/bench_quality.py --set refine.lr=1e-4  # a candidate setting (YAML value)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import yaml
from sklearn.metrics import adjusted_rand_score

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
SLOVENIA = ROOT.parent / "shared" / "data" / "slovenia-s2-ndvi" / "geotiff"
MODELS = ("spectral", "geo", "refined")
KEYS = ("ari", "nmi", "silhouette", "geo_silhouette")


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


def run(config: dict, work: Path) -> float:
    """One whole workflow run of ``config`` (over config/config.yaml) in ``work``; its wall time."""
    (work / "run.yaml").write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--cores", "2", "--quiet", "--configfile", str(work / "run.yaml")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"workflow failed in {work}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


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


def bench(data: str, seeds: list[int], extra: dict, keep: Path | None) -> dict:
    results: dict = {m: {k: [] for k in KEYS} for m in MODELS}
    maps: dict = {m: [] for m in MODELS}
    walls = []
    with tempfile.TemporaryDirectory(prefix=f"landtaxa-quality-{data}-") as tmp:
        base = slovenia_archive(Path(tmp) / "archive") if data == "slovenia" else {}
        for seed in seeds:
            work = (keep or Path(tmp)) / f"{data}-seed{seed}"
            work.mkdir(parents=True, exist_ok=True)
            walls.append(run(merged(merged(base, extra), {"seed": seed}), work))
            metrics = json.loads((work / "results/metrics.json").read_text())
            for m in MODELS:
                for k in KEYS:
                    results[m][k].append(metrics[m][k])
                maps[m].append(labels_of(work, m, metrics[m]["k"]))
            print(f"{data} seed {seed}: {walls[-1]:.0f} s "
                  + "  ".join(f"{m} ARI {metrics[m]['ari']:.3f}" for m in MODELS), flush=True)
    out = {m: {k: (statistics.mean(v), statistics.pstdev(v)) for k, v in results[m].items()} for m in MODELS}
    for m in MODELS:
        out[m]["agreement"] = agreement(maps[m])
    out["wall_seconds"] = (statistics.mean(walls), statistics.pstdev(walls))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=["demo", "slovenia"], choices=["demo", "slovenia"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config settings for every run")
    p.add_argument("--keep", type=Path, help="keep the runs' folders under this folder")
    args = p.parse_args()
    extra = settings(args.set)
    result = {"seeds": args.seeds, "settings": extra}
    for data in args.data:
        result[data] = bench(data, args.seeds, extra, args.keep)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nmean +- sd over seeds {args.seeds}" + (f", settings {extra}" if extra else ""))
    print(f"{'':22}" + "".join(f"{m:>20}" for m in MODELS))
    for data in args.data:
        r = result[data]
        for key in (*KEYS, "agreement"):
            cells = [f"{r[m][key]:.3f}" if key == "agreement" else f"{r[m][key][0]:.3f} +- {r[m][key][1]:.3f}"
                     for m in MODELS]
            print(f"{f'{data} {key}':22}" + "".join(f"{c:>20}" for c in cells))
        print(f"{f'{data} wall s':22}{r['wall_seconds'][0]:>20.0f} (+- {r['wall_seconds'][1]:.0f}, whole run)")


if __name__ == "__main__":
    main()
