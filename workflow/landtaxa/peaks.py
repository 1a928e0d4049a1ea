"""Each step's peak memory, written by the step's own process as it exits.

A job's ``mem_mb`` must cover its peak resident memory, the kernel's ``VmHWM``. Polling ``/proc`` from
outside misses the peaks of short jobs (Snakemake's ``benchmark:`` samples every 30 s), and the kernel's
maxrss of a child (``os.wait4``) counts the memory of the process it was forked from. So, when the
environment names a file in ``LANDTAXA_PEAKS``, ``python -m landtaxa <step>`` appends one JSON line to it
as it exits: the step, its arguments, its working folder, its peak in MB and its run time. Every job of a
workflow run started with that variable is recorded this way; :func:`run_step` runs one step alone.

The tests of the estimates (``tests/test_resources.py``) and the benchmarks (``bench_scale``, ``bench_run``,
``bench_demo``) measure through this module, and only through it.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ENV = "LANDTAXA_PEAKS"


def vmhwm_mb() -> float:
    """This process's peak resident memory so far (``VmHWM``), in MB; 0 where /proc has none."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return 0.0


def record_at_exit(argv: Sequence[str]) -> None:
    """When ``$LANDTAXA_PEAKS`` names a file, append this step's peak and run time to it as the process exits."""
    path = os.environ.get(ENV)
    if not path:
        return
    start = time.time()

    def write() -> None:
        line = json.dumps({"step": argv[0] if argv else "", "args": list(argv), "cwd": os.getcwd(),
                           "pid": os.getpid(), "start": start, "seconds": time.time() - start,
                           "peak_mb": round(vmhwm_mb(), 3)})
        with open(path, "a", encoding="utf-8") as out:  # one short line per process, appended whole
            out.write(line + "\n")

    atexit.register(write)


def read_peaks(path: str | os.PathLike, cwd: str | os.PathLike | None = None) -> list[dict]:
    """The records appended to ``path`` (none when it does not exist), only those run in ``cwd`` if given."""
    path = Path(path)
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if cwd is not None:
        where = Path(cwd).resolve()
        records = [r for r in records if Path(r["cwd"]).resolve() == where]
    return records


# ``python -c`` this, then the step's arguments: records the step's peak with THIS module (loaded from its file),
# whatever revision of the package PYTHONPATH points at (a benchmark's baseline may predate the recording)
_WRAPPER = """
import importlib.util, os, runpy, sys
spec = importlib.util.spec_from_file_location("_landtaxa_peaks", {file!r})
peaks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peaks)
peaks.record_at_exit(sys.argv[1:])
os.environ.pop(peaks.ENV)  # the package's own record would count the step twice
sys.argv[0] = "landtaxa"
runpy.run_module("landtaxa", run_name="__main__", alter_sys=True)
"""


def run_step(args: Sequence[str], peaks_file: str | os.PathLike, env: dict[str, str] | None = None,
             stderr=subprocess.PIPE) -> dict:
    """Run the step ``args`` as ``python -m landtaxa ARGS`` does, in its own process (``env`` over this one's:
    PYTHONPATH chooses the package's revision), and return its record (step, args, seconds, peak_mb). A failed
    step raises RuntimeError with the end of its error output."""
    peaks_file = Path(peaks_file)
    peaks_file.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", _WRAPPER.format(file=__file__), *args],
                          env={**os.environ, **(env or {}), ENV: str(peaks_file)}, stdout=subprocess.DEVNULL,
                          stderr=stderr, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"landtaxa {' '.join(args[:1])} failed ({proc.returncode}): {(proc.stderr or '')[-3000:]}")
    records = read_peaks(peaks_file)
    if not records:
        raise RuntimeError(f"landtaxa {' '.join(args[:1])} wrote no peak to {peaks_file}")
    return records[-1]
