"""A newcomer's first run: the default demo end to end, with time and peak memory per stage.

Runs `snakemake --cores N` on the built-in demo in a fresh folder (or reads an existing run
with --workdir), then sums the rules' benchmark files (results/benchmarks/<rule>/...) per
stage: jobs, total and longest wall seconds, largest peak RSS. Writes benchmarks/out/demo.json.

While it runs, every job's process (``python -m landtaxa <step> ...``) is found in /proc and its
peak RSS read from ``VmHWM`` every 50 ms, so short peaks that Snakemake's ``benchmark:``
sampling (every 30 s after the first 30 s) misses are caught: the largest per step, and the
largest of the whole run, are printed beside the benchmark files' figures.

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
import threading
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


class JobPeaks:
    """Peak RSS (VmHWM, MB) of every ``python -m landtaxa <step>`` process while it lives, polled from /proc, with
    its arguments and the times it was first and last seen (its run time, to the polling interval); with ``cwd``,
    only the processes working in that folder (one run's jobs, not another run's on the same machine)."""

    def __init__(self, interval: float = 0.05, cwd: Path | None = None) -> None:
        self.interval = interval
        self.cwd = None if cwd is None else Path(cwd).resolve()
        self.jobs: dict[int, dict] = {}  # pid -> step, args, peak_mb, first, last (time.time())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> JobPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    self._read(int(entry.name), entry)
            time.sleep(self.interval)

    def _read(self, pid: int, entry: Path) -> None:
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"landtaxa" not in args or b"-m" not in args:
                return
            step = args[args.index(b"landtaxa") + 1].decode()
            if self.cwd is not None and Path(os.readlink(entry / "cwd")) != self.cwd:
                return
            kb = next(int(line.split()[1]) for line in (entry / "status").read_text().splitlines()
                      if line.startswith("VmHWM:"))
        except (OSError, ValueError, StopIteration, IndexError):
            return
        now = time.time()
        job = self.jobs.setdefault(pid, {"step": step, "args": [a.decode() for a in args if a], "peak_mb": 0.0,
                                         "first": now})
        job["peak_mb"], job["last"] = max(job["peak_mb"], kb / 1024), now

    @property
    def peaks(self) -> dict[int, tuple[str, str, float]]:
        """pid -> (step, its output argument, peak MB)."""
        out = {}
        for pid, job in self.jobs.items():
            args = job["args"]
            target = next((args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--out") or a in
                           ("--tif", "--json")), "")
            out[pid] = (job["step"], target, job["peak_mb"])
        return out

    def by_step(self) -> dict[str, dict]:
        steps: dict[str, dict] = {}
        for step, out, mb in self.peaks.values():
            st = steps.setdefault(step, {"processes": 0, "peak_mb": 0.0, "job": ""})
            st["processes"] += 1
            if mb > st["peak_mb"]:
                st["peak_mb"], st["job"] = mb, out
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
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", tmp,
               "--cores", str(args.cores), "--quiet"]
        if args.configfile:
            cmd += ["--configfile", str(args.configfile.resolve())]
        if args.config:
            cmd += ["--config", *args.config]
        t0 = time.perf_counter()
        with JobPeaks(cwd=workdir) as peaks:
            subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        polled = peaks.by_step()
    else:
        workdir = args.workdir
        polled = {}
    stages = stage_table(workdir)
    metrics = json.loads((workdir / "results" / "metrics.json").read_text())
    summary = {"workdir": str(workdir), "cores": args.cores, "wall_seconds": wall, "stages": stages,
               "job_peaks_mb": polled,
               "quality": {m: {k: v[k] for k in ("ari", "nmi", "silhouette") if k in v} for m, v in metrics.items()}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    if wall is not None:
        print(f"demo end to end: {wall:.0f} s on {args.cores} cores ({workdir})")
    print(f"{'stage':14}{'jobs':>6}{'sum s':>9}{'max s':>9}{'max RSS MB':>12}")
    for rule, st in sorted(stages.items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"{rule:14}{st['jobs']:>6}{st['seconds']:>9.1f}{st['max_seconds']:>9.1f}{st['max_rss_mb']:>12.0f}")
    if polled:
        print(f"\n{'step':16}{'procs':>6}{'peak MB':>9}  (VmHWM polled every 50 ms, a job's forked children counted "
              "apart; the job with the largest)")
        for step, st in sorted(polled.items(), key=lambda kv: -kv[1]["peak_mb"]):
            print(f"{step:16}{st['processes']:>6}{st['peak_mb']:>9.0f}  {st['job']}")
        step, top = max(polled.items(), key=lambda kv: kv[1]["peak_mb"])
        print(f"largest job peak (VmHWM polled every 50 ms): {top['peak_mb']:.0f} MB, {step} {top['job']}")
    for model, q in summary["quality"].items():
        print(model, {k: round(v, 3) for k, v in q.items()})


if __name__ == "__main__":
    main()
