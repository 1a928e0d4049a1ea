"""A whole run on this CPU, every job's measured peak memory and run time beside what it asked for.

Runs ``snakemake --cores N`` with a config (default: the paper's tile count with small tiles, the demo grown
to 220 x 220 tiles of 16 px = 48,400 tiles on 20 dates, tilenet-lite), with every job's ``VmHWM`` as the job
records it when it exits (landtaxa.peaks; Snakemake's ``benchmark:`` samples every 30 s and misses short peaks),
then builds the run's plan as the workflow does (landtaxa.plan.RunPlan, a local run on N cores) and prints,
job by job and per rule, the peak next to ``mem_mb`` and the run time next to ``runtime``, with the ratios.
The criterion the requests are held to: peak <= request <= 3 x peak. Times are noisy on a shared machine,
and a request's floor is 10 minutes, so requested time is judged as an upper bound only. Writes
benchmarks/out/run.json (and keeps the run's folder, given with --workdir or printed).

    python benchmarks/bench_run.py --cores 2                       # about 2-3 h on 2 cores
    python benchmarks/bench_run.py --configfile my.yaml --workdir /scratch/run
    python benchmarks/bench_run.py --report /scratch/run           # the table again, from run.json's jobs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

sys.path.insert(0, str(ROOT / "tests" / "workflow"))  # the workflow runner the tests use

from runner import Snakemake  # noqa: E402

from landtaxa.peaks import ENV, read_peaks  # noqa: E402

PAPER_TILES = {"demo": {"size": 3520, "n_dates": 20}}  # 220 x 220 tiles of the demo's 16 px, 20 dates


def rule_of(step: str, args: list[str]) -> tuple[str, dict]:
    """(rule, wildcards) of one job, from its step and the paths in its arguments."""
    text = " ".join(args)
    wc: dict[str, str] = {}
    for pattern in (r"results/embeddings/(?P<model>[^/ ]+)/(?P<date>\d{4}-\d{2}-\d{2})\.zarr",
                    r"results/(?:clusters|analysis|evolution)/(?:train/)?(?P<model>[^/ ]+)/k(?P<k>\d+)",
                    r"results/series/(?:train/)?(?P<model>[^/ .]+)\.npz", r"results/aligned/(?P<date>[\d-]+)\.tif",
                    r"results/maps/(?P<model>[^/ ]+)_clusters\.tif", r"results/analysis/(?P<model>[^/ ]+)/k_choice"):
        m = re.search(pattern, text)
        if m:
            wc.update({k: v for k, v in m.groupdict().items() if k not in wc})
    out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--out", "--out-dir", "--tif", "--csv")), "")
    rule = step
    if step == "embed" and wc.get("model") in ("spectral", "means"):
        rule = "embed_baseline"
    elif step == "embed":  # one job per model of the chain, its first store member 0's: the members embedded in turn
        wc["family"] = wc.pop("model")
    elif step in ("series", "clusters") and f"results/{step}/train/" in out:
        rule = f"{step}_train"
    elif step == "map" and "/analysis/" in out:
        rule = "map_k"
    elif step == "train":
        wc = {"geo": Path(out).stem}
    elif step == "refine":
        wc = {"refined": Path(out).stem}
    if step in ("align", "embed") and "date" not in wc:
        wc["date"] = next(a for a in args if re.fullmatch(r"\d{4}-\d{2}-\d{2}", a))
    return rule, wc


def merged(base: dict, over: dict) -> dict:
    return {**base, **{k: merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in over.items()}}


def plan_of(workdir: Path, overlay: dict, cores: int):
    """The run's plan as the workflow built it (config/config.yaml with the overlay over it)."""
    from landtaxa.configcheck import check_config
    from landtaxa.plan import RunPlan

    config = merged(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), overlay)
    check_config(config, ROOT / "workflow" / "schemas" / "config.schema.yaml")
    return RunPlan.from_config(config, workdir, cluster=False, cores=cores)


def report(jobs: list[dict], plan) -> dict:
    """Per job: rule, wildcards, peak and request; per rule: the extremes; printed."""
    rows = []
    for job in jobs:
        rule, wc = rule_of(job["step"], job["args"])
        req = plan.resources(rule, wc)
        seconds = job.get("seconds", job.get("last", 0) - job.get("first", 0))  # run.json of earlier versions: polled
        rows.append({"rule": rule, "wildcards": wc, "peak_mb": job["peak_mb"], "mem_mb": req["mem_mb"],
                     "seconds": seconds, "runtime_min": req["runtime"]})
    per_rule: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "peak_mb": 0.0, "mem_mb": 0, "min_ratio": 1e9,
                                                     "max_ratio": 0.0, "max_seconds": 0.0, "runtime_min": 0})
    for r in rows:
        st = per_rule[r["rule"]]
        ratio = r["mem_mb"] / max(r["peak_mb"], 1)
        st["jobs"] += 1
        st["peak_mb"], st["mem_mb"] = max(st["peak_mb"], r["peak_mb"]), max(st["mem_mb"], r["mem_mb"])
        st["min_ratio"], st["max_ratio"] = min(st["min_ratio"], ratio), max(st["max_ratio"], ratio)
        st["max_seconds"], st["runtime_min"] = max(st["max_seconds"], r["seconds"]), max(st["runtime_min"],
                                                                                        r["runtime_min"])
    print(f"{'rule':18}{'jobs':>5}{'peak MB':>9}{'mem_mb':>8}{'request/peak':>15}{'longest s':>11}{'runtime s':>11}"
          f"{'ok':>4}")
    for rule, st in sorted(per_rule.items(), key=lambda kv: -kv[1]["peak_mb"]):
        ok = st["min_ratio"] >= 1 and st["max_ratio"] <= 3
        st["ok"] = ok
        print(f"{rule:18}{st['jobs']:>5}{st['peak_mb']:>9.0f}{st['mem_mb']:>8}"
              f"{st['min_ratio']:>8.2f}-{st['max_ratio']:<6.2f}{st['max_seconds']:>11.0f}{st['runtime_min'] * 60:>11}"
              f"{'yes' if ok else 'NO':>4}")
    bad = [r for r in rows if not 1 <= r["mem_mb"] / max(r["peak_mb"], 1) <= 3]
    late = [r for r in rows if r["seconds"] > r["runtime_min"] * 60]
    print(f"{len(rows)} jobs; {len(rows) - len(bad)} with peak <= request <= 3 x peak; "
          f"{len(late)} ran longer than their runtime")
    for r in bad + late:
        print("  ", r)
    return {"jobs": rows, "rules": dict(per_rule)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", type=Path, help="a config merged over config/config.yaml (default: the paper's "
                   "tile count with 16 px tiles)")
    p.add_argument("--workdir", type=Path, help="where the run goes (default: a new temporary folder, kept)")
    p.add_argument("--report", type=Path, help="a finished run's folder: the table again from its run.json")
    args = p.parse_args()
    overlay = yaml.safe_load(args.configfile.read_text()) if args.configfile else PAPER_TILES
    if args.report:
        saved = json.loads((args.report / "run.json").read_text())
        result = report(saved["measured"], plan_of(args.report, saved["overlay"], saved["cores"]))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="landtaxa-run-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    cmd = Snakemake().command(workdir, "--cores", str(args.cores), configs=[workdir / "overlay.yaml"])
    peaks = workdir / "peaks.jsonl"
    peaks.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open(workdir / "snakemake.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, ENV: str(peaks)})
    wall = time.perf_counter() - t0
    measured = read_peaks(peaks, cwd=workdir)
    (workdir / "run.json").write_text(json.dumps({"overlay": overlay, "cores": args.cores, "wall_seconds": wall,
                                                  "returncode": proc.returncode, "measured": measured}, indent=1))
    print(f"run in {workdir}: exit {proc.returncode}, {wall / 3600:.2f} h on {args.cores} cores, "
          f"{len(measured)} jobs measured")
    if proc.returncode != 0:
        sys.exit(f"the run failed: see {workdir / 'snakemake.log'}")
    result = report(measured, plan_of(workdir, overlay, args.cores))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "run.json").write_text(json.dumps({"workdir": str(workdir), "wall_seconds": wall, **result}, indent=1))


if __name__ == "__main__":
    main()
