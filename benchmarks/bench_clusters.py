"""Clustering benchmark: landtaxa's K-means vs tslearn's TimeSeriesKMeans (Euclidean).

Both start from the same initial centres (k-means++ on the data, fixed seed) and run one
initialisation to convergence (no label changes; tslearn with a vanishing ``tol``); each runs
in its own subprocess and reports its own peak RSS (VmHWM; getrusage would include the
parent's peak inherited through fork). Both
inertias are recomputed the same way, from the final labels and centroids. Prints a
side-by-side table and writes benchmarks/out/clusters.json.

    python benchmarks/bench_clusters.py            # the paper's scale: N=12100, T=20, D=512
    python benchmarks/bench_clusters.py --n 2000   # quicker
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def make_data(n: int, t: int, d: int, k: int, seed: int) -> np.ndarray:
    """Series drawn around 4k underlying kinds, each with its own trajectory, plus noise (float32).

    More kinds than clusters, as in real land cover: K-means must group kinds, takes several
    iterations and leaves no cluster empty (an empty cluster makes tslearn give up on a given
    initialisation, which would not compare like with like).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (4 * k, t, d)).astype(np.float32)
    labels = rng.integers(0, 4 * k, n)
    return centres[labels] + rng.normal(0, 1.0, (n, t, d)).astype(np.float32)


def peak_rss_mb() -> float:
    """This process's own peak resident memory (Linux VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_one(which: str, data_path: str, init_path: str, k: int) -> None:
    x = np.load(data_path)
    init = np.load(init_path)
    # imports before the clock starts: the timing is the fit alone
    if which == "landtaxa":
        sys.path.insert(0, str(ROOT / "workflow"))
        from landtaxa.clustering.clusters import kmeans_series
    else:
        from tslearn.clustering import TimeSeriesKMeans
    t0 = time.perf_counter()
    if which == "landtaxa":
        res = kmeans_series(x, k, seed=0, init=init, max_iter=100)  # as the workflow calls it
        labels, centres, n_iter = res.labels, res.centroids, res.n_iter
    else:
        # tol: stop when an iteration leaves the inertia unchanged, i.e. at convergence, as landtaxa
        # does (tslearn's default 1e-6 on the mean inertia can stop a step early at this scale)
        km = TimeSeriesKMeans(n_clusters=k, metric="euclidean", init=init, n_init=1, max_iter=100, tol=1e-12,
                              random_state=0)
        labels = km.fit_predict(x)
        centres, n_iter = km.cluster_centers_, km.n_iter_
    seconds = time.perf_counter() - t0
    peak_mb = peak_rss_mb()
    inertia = sum(float(((x[labels == c] - centres[c]) ** 2).sum(dtype=np.float64)) for c in range(k))
    np.save(f"{data_path}.{which}.labels.npy", labels)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "inertia": float(inertia), "n_iter": int(n_iter)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=12100)
    p.add_argument("--t", type=int, default=20)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--run", choices=["landtaxa", "tslearn"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--init", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run:
        run_one(args.run, args.data, args.init, args.k)
        return
    from sklearn.cluster import kmeans_plusplus
    from sklearn.metrics import adjusted_rand_score

    OUT.mkdir(parents=True, exist_ok=True)
    x = make_data(args.n, args.t, args.d, args.k, seed=0)
    data_path, init_path = OUT / "bench_series.npy", OUT / "bench_init.npy"
    np.save(data_path, x)
    init, _ = kmeans_plusplus(x.reshape(len(x), -1), args.k, random_state=0)
    np.save(init_path, init.reshape(args.k, args.t, args.d))
    del x
    results = {}
    for which in ("landtaxa", "tslearn"):
        cmd = [sys.executable, __file__, "--run", which, "--data", str(data_path), "--init", str(init_path),
               "--k", str(args.k)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[which] = json.loads(out)
    a = np.load(f"{data_path}.landtaxa.labels.npy")
    b = np.load(f"{data_path}.tslearn.labels.npy")
    lt, ts = results["landtaxa"], results["tslearn"]
    summary = {
        "n": args.n, "t": args.t, "d": args.d, "k": args.k,
        "landtaxa": lt, "tslearn": ts,
        "speedup": ts["seconds"] / lt["seconds"],
        "memory_ratio": lt["peak_rss_mb"] / ts["peak_rss_mb"],
        "inertia_rel_diff": abs(lt["inertia"] - ts["inertia"]) / ts["inertia"],
        "ari_between_partitions": float(adjusted_rand_score(a, b)),
    }
    for f in (data_path, init_path, Path(f"{data_path}.landtaxa.labels.npy"), Path(f"{data_path}.tslearn.labels.npy")):
        f.unlink()
    (OUT / "clusters.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"N={args.n} T={args.t} D={args.d} K={args.k}")
    print(f"{'':12}{'seconds':>10}{'peak RSS MB':>14}{'inertia':>16}{'iterations':>12}")
    for name, r in (("landtaxa", lt), ("tslearn", ts)):
        print(f"{name:12}{r['seconds']:>10.2f}{r['peak_rss_mb']:>14.0f}{r['inertia']:>16.9g}{r['n_iter']:>12}")
    print(f"speed-up x{summary['speedup']:.1f}, memory {summary['memory_ratio']:.2f} of tslearn's, "
          f"inertia rel. diff {summary['inertia_rel_diff']:.1e}, ARI between partitions "
          f"{summary['ari_between_partitions']:.4f}")


if __name__ == "__main__":
    main()
