"""The one way whole-workflow tests and the benchmarks run snakemake (the ``snakemake`` fixture of conftest.py;
benchmarks/ import it too)."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).resolve().parent / "configs"


class Snakemake:
    """``snakemake --snakefile <repo>/Snakefile --directory <workdir> <args> [--configfile ...]``, ``repo`` this
    checkout by default (a benchmark may plan another revision's)."""

    def __init__(self, repo: Path = REPO) -> None:
        self.repo = Path(repo)

    def command(self, workdir: Path, *args: str, configs: Sequence[str | Path] = ()) -> list[str]:
        files = ["--configfile", *map(str, configs)] if configs else []  # last: it takes every word after it
        return [sys.executable, "-m", "snakemake", "--snakefile", str(self.repo / "Snakefile"), "--directory",
                str(workdir), *args, *files]

    def __call__(self, workdir: Path, *args: str, configs: Sequence[str | Path] = (), timeout: float = 900,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(workdir, *args, configs=configs), capture_output=True, text=True,
                              timeout=timeout, env=None if env is None else {**os.environ, **env})

    def ok(self, workdir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """Run and check it succeeded (the end of its output in the message when not)."""
        proc = self(workdir, *args, **kwargs)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        return proc

    def popen(self, workdir: Path, *args: str, configs: Sequence[str | Path] = ()) -> subprocess.Popen:
        """Start a run in its own process group (so a test can kill it with everything it started)."""
        return subprocess.Popen(self.command(workdir, *args, configs=configs), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def jobs(output: str) -> dict[str, int]:
        """Snakemake's 'Job stats' table (jobs per rule), without the target rule all; {} when nothing runs."""
        if "Job stats:" not in output:
            return {}
        table = output.split("Job stats:", 1)[1].split("total", 1)[0]
        counts = collections.Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)})
        counts.pop("all", None)
        return dict(counts)

    def planned(self, workdir: Path, *args: str, **kwargs) -> dict[str, int]:
        """The jobs a dry run of this config would run, per rule."""
        proc = self.ok(workdir, "-n", "--cores", "1", *args, **kwargs)
        return self.jobs(proc.stdout + proc.stderr)
