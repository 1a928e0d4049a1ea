"""Tests of the peak memory each step records as it exits (landtaxa.peaks), what the estimates are checked by."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from landtaxa.peaks import ENV, read_peaks, run_step

PACKAGE = str(Path(__file__).resolve().parents[1] / "workflow")
# a process that records its peak, holds `mb` MB for a moment and exits: far too short for a poller to see
HOLD = """
import sys, numpy as np
from landtaxa.peaks import record_at_exit
record_at_exit(["hold", sys.argv[1]])
block = np.ones(int(sys.argv[1]) * 2**20 // 8)
"""


def hold(mb: int, peaks: Path, cwd: Path) -> None:
    subprocess.run([sys.executable, "-c", HOLD, str(mb)], env={ENV: str(peaks), "PYTHONPATH": PACKAGE}, cwd=cwd,
                   check=True)


def test_a_short_peak_is_recorded_and_grows_with_what_the_process_held(tmp_path: Path) -> None:
    peaks = tmp_path / "peaks.jsonl"
    for mb in (10, 300):
        hold(mb, peaks, tmp_path)
    small, large = read_peaks(peaks)
    assert (small["step"], small["args"]) == ("hold", ["hold", "10"])
    assert large["peak_mb"] - small["peak_mb"] == pytest.approx(290, abs=15)
    assert 0 <= small["seconds"] < 60 and small["pid"] != large["pid"]


def test_records_are_kept_apart_by_the_folder_they_ran_in(tmp_path: Path) -> None:
    peaks = tmp_path / "peaks.jsonl"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    hold(1, peaks, tmp_path / "a")
    hold(2, peaks, tmp_path / "b")
    assert [r["args"][1] for r in read_peaks(peaks, cwd=tmp_path / "b")] == ["2"]
    assert len(read_peaks(peaks)) == 2 and read_peaks(tmp_path / "none.jsonl") == []


def test_run_step_records_a_step_once_and_names_a_failed_one(tmp_path: Path) -> None:
    record = run_step(["--help"], tmp_path / "peaks.jsonl", {"PYTHONPATH": PACKAGE})
    assert record["args"] == ["--help"] and record["peak_mb"] > 10
    assert len(read_peaks(tmp_path / "peaks.jsonl")) == 1  # the wrapper's record only, not the step's own too
    with pytest.raises(RuntimeError, match="landtaxa grid failed"):
        run_step(["grid", "--no-such-option"], tmp_path / "peaks.jsonl", {"PYTHONPATH": PACKAGE})
