"""A newcomer's first run: the default demo end to end, with time and peak memory per stage.

Runs `snakemake --cores N` on the built-in demo in a fresh folder (or reads an existing run
with --workdir), then sums the rules' benchmark files (results/benchmarks/<rule>/...) per
stage: jobs, total and longest wall seconds, largest peak RSS. Writes benchmarks/out/demo.json.

    python benchmarks/bench_demo.py --cores 2
    python benchmarks/bench_demo.py --config encoder='{"name": "tilenet-lite", "z_dim": 512}'
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def stage_table(workdir: Path) -> dict[str, dict]:
    stages: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "seconds": 0.0, "max_seconds": 0.0, "max_rss_mb": 0.0})
    for tsv in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(workdir / "results" / "benchmarks").parts[0]
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        st = stages[rule]
        st["jobs"] += 1
        st["seconds"] += float(row["s"])
        st["max_seconds"] = max(st["max_seconds"], float(row["s"]))
        rss = row.get("max_rss", "NA")
        if rss not in ("NA", "-", ""):
            st["max_rss_mb"] = max(st["max_rss_mb"], float(rss))
    return dict(stages)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--workdir", type=Path, help="summarise this finished run instead of starting one")
    p.add_argument("--config", nargs="*", default=[], help="extra --config key=value for the run")
    args = p.parse_args()
    wall = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="landtaxa-demo-")
        workdir = Path(tmp)
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", tmp,
               "--cores", str(args.cores), "--quiet"]
        if args.config:
            cmd += ["--config", *args.config]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
    else:
        workdir = args.workdir
    stages = stage_table(workdir)
    metrics = json.loads((workdir / "results" / "metrics.json").read_text())
    summary = {"workdir": str(workdir), "cores": args.cores, "wall_seconds": wall, "stages": stages,
               "quality": {m: {k: v[k] for k in ("ari", "nmi", "silhouette") if k in v} for m, v in metrics.items()}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    if wall is not None:
        print(f"demo end to end: {wall:.0f} s on {args.cores} cores ({workdir})")
    print(f"{'stage':14}{'jobs':>6}{'sum s':>9}{'max s':>9}{'max RSS MB':>12}")
    for rule, st in sorted(stages.items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"{rule:14}{st['jobs']:>6}{st['seconds']:>9.1f}{st['max_seconds']:>9.1f}{st['max_rss_mb']:>12.0f}")
    for model, q in summary["quality"].items():
        print(model, {k: round(v, 3) for k, v in q.items()})


if __name__ == "__main__":
    main()
