"""A clustering job's fixed costs, scikit-learn's way and landtaxa's, side by side in one run.

1. k-means++ seeding: ``n_init`` seedings of one (N, T x D) float32 series with scikit-learn's
   ``kmeans_plusplus`` and with landtaxa's (clustering/seeding.py), the same ``RandomState`` for both;
   the centres must be equal.
2. What a clustering job's scores cost to load: a new Python process importing the scores from
   scikit-learn (``sklearn.metrics``, which loads scipy.stats and pandas) and from landtaxa
   (``landtaxa.clustering.metrics``), median of ``--repeats``.

Default sizes are the demo's (1,024 tiles, 8 dates, D = 512, K = 7, 20 restarts). Prints a table with
the ratios and writes benchmarks/out/seeding.json.

    python benchmarks/bench_seeding.py
    python benchmarks/bench_seeding.py --n 4096 --t 20   # the largest sample seeding ever sees, paper's dates
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "workflow"))

from landtaxa.clustering.seeding import SampleDistances, kmeans_plusplus  # noqa: E402


def seedings(x: np.ndarray, k: int, n_init: int, seed: int) -> dict:
    from sklearn.cluster import kmeans_plusplus as sklearn_kmeans_plusplus

    rng = np.random.RandomState(seed)
    t0 = time.perf_counter()
    theirs = [sklearn_kmeans_plusplus(x, k, random_state=rng)[0] for _ in range(n_init)]
    t1 = time.perf_counter()
    rng = np.random.RandomState(seed)
    dist = SampleDistances(x)
    ours = [kmeans_plusplus(x, k, rng, dist) for _ in range(n_init)]
    t2 = time.perf_counter()
    same = all(np.array_equal(a, b) for a, b in zip(theirs, ours, strict=True))
    return {"scikit-learn s": t1 - t0, "landtaxa s": t2 - t1, "same centres": same}


def import_seconds(module: str, repeats: int) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow")}
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env=env).stdout) for _ in range(repeats)]
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--t", type=int, default=8)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--k", type=int, default=7)
    p.add_argument("--n-init", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    kinds = rng.normal(0, 1, (4 * args.k, args.t * args.d)).astype(np.float32)
    x = kinds[rng.integers(0, 4 * args.k, args.n)] + rng.normal(0, 1, (args.n, args.t * args.d)).astype(np.float32)
    seeding = seedings(x, args.k, args.n_init, 0)
    loads = {name: import_seconds(module, args.repeats)
             for name, module in (("scikit-learn", "sklearn.metrics"), ("landtaxa", "landtaxa.clustering.metrics"))}
    print(f"{args.n_init} k-means++ seedings of {args.n} x {args.t * args.d} float32 series, K={args.k}:")
    print(f"  scikit-learn {seeding['scikit-learn s']:7.2f} s   landtaxa {seeding['landtaxa s']:7.3f} s   "
          f"ratio {seeding['scikit-learn s'] / seeding['landtaxa s']:6.1f}x   same centres: {seeding['same centres']}")
    print(f"loading the scores in a new process (median of {args.repeats}):")
    print(f"  scikit-learn {loads['scikit-learn']:7.2f} s   landtaxa {loads['landtaxa']:7.3f} s   "
          f"ratio {loads['scikit-learn'] / loads['landtaxa']:6.1f}x")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "seeding.json").write_text(json.dumps({"args": vars(args), "seeding": seeding, "imports": loads}, indent=1))
    if not seeding["same centres"]:
        raise SystemExit("the two seedings gave different centres")


if __name__ == "__main__":
    main()
