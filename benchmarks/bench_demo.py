"""A newcomer's first run: the default demo end to end, with time and peak memory per stage.

Runs `snakemake --cores N` on the built-in demo in a fresh folder (or reads an existing run
with --workdir), then sums the rules' benchmark files (results/benchmarks/<rule>/...) per
stage: jobs, total and longest wall seconds, largest peak RSS. Writes benchmarks/out/demo.json.

Every job (``python -m landtaxa <step> ...``) records its own peak RSS (``VmHWM``) as it exits
(landtaxa.peaks), so short peaks that Snakemake's ``benchmark:`` sampling (every 30 s after the
first 30 s) misses are caught: the largest per step, and the largest of the whole run, are
printed beside the benchmark files' figures.

    python benchmarks/bench_demo.py --cores 2
    python benchmarks/bench_demo.py --config encoder='{"name": "tilenet-lite", "z_dim": 512}'
    python benchmarks/bench_demo.py --configfile big.yaml     # e.g. demo: {size: 4096}: 65,536 tiles
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "tests" / "workflow"))  # the workflow runner the tests use

from runner import Snakemake  # noqa: E402

from landtaxa.peaks import ENV, read_peaks  # noqa: E402


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


def job_peaks(records: list[dict]) -> dict[str, dict]:
    """Per step: its processes, the largest peak (MB) and that job's output argument."""
    steps: dict[str, dict] = {}
    for r in records:
        args = r["args"]
        out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--out") or a in ("--tif", "--json")),
                   "")
        st = steps.setdefault(r["step"], {"processes": 0, "peak_mb": 0.0, "job": ""})
        st["processes"] += 1
        if r["peak_mb"] > st["peak_mb"]:
            st["peak_mb"], st["job"] = r["peak_mb"], out
    return steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--workdir", type=Path, help="summarise this finished run instead of starting one")
    p.add_argument("--config", nargs="*", default=[], help="extra --config key=value for the run")
    p.add_argument("--configfile", type=Path, help="a config file merged over the defaults (snakemake --configfile)")
    args = p.parse_args()
    wall = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="landtaxa-demo-")
        workdir = Path(tmp)
        extra = ["--config", *args.config] if args.config else []
        cmd = Snakemake().command(workdir, "--cores", str(args.cores), "--quiet", *extra,
                                  configs=[args.configfile.resolve()] if args.configfile else [])
        peaks = Path(tmp) / "peaks.jsonl"
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, ENV: str(peaks)})
        wall = time.perf_counter() - t0
        polled = job_peaks(read_peaks(peaks, cwd=workdir))
    else:
        workdir = args.workdir
        polled = {}
    stages = stage_table(workdir)
    metrics = json.loads((workdir / "results" / "metrics.json").read_text())
    summary = {"workdir": str(workdir), "cores": args.cores, "wall_seconds": wall, "stages": stages,
               "job_peaks_mb": polled,
               "main": metrics.get("main", {}).get("model"),
               "quality": {m: {k: v[k] for k in ("ari", "nmi", "silhouette") if k in v}
                           for m, v in metrics.items() if m != "main"}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    if wall is not None:
        print(f"demo end to end: {wall:.0f} s on {args.cores} cores ({workdir})")
    print(f"{'stage':14}{'jobs':>6}{'sum s':>9}{'max s':>9}{'max RSS MB':>12}")
    for rule, st in sorted(stages.items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"{rule:14}{st['jobs']:>6}{st['seconds']:>9.1f}{st['max_seconds']:>9.1f}{st['max_rss_mb']:>12.0f}")
    if polled:
        print(f"\n{'step':16}{'procs':>6}{'peak MB':>9}  (VmHWM recorded by each job; the job with the largest)")
        for step, st in sorted(polled.items(), key=lambda kv: -kv[1]["peak_mb"]):
            print(f"{step:16}{st['processes']:>6}{st['peak_mb']:>9.0f}  {st['job']}")
        step, top = max(polled.items(), key=lambda kv: kv[1]["peak_mb"])
        print(f"largest job peak (VmHWM): {top['peak_mb']:.0f} MB, {step} {top['job']}")
    for model, q in summary["quality"].items():
        print(model + (" (main)" if model == summary["main"] else ""), {k: round(v, 3) for k, v in q.items()})


if __name__ == "__main__":
    main()
