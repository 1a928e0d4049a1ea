"""Tests of the command line (landtaxa.cli): generated from the steps' functions and parameter objects."""

from __future__ import annotations

import inspect
import logging
import typing

import numpy as np
import pytest

from landtaxa.cli import STEPS, main, step_function, step_parser
from landtaxa.inputs.grid import Grid
from landtaxa.learning.cube import embedding_store
from landtaxa.params import schema_property
from landtaxa.plan import STEP_PARAMS
from landtaxa.storage import load_npz


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_step_is_a_keyword_function_with_its_parameter_object(step: str) -> None:
    fn = step_function(step)
    kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}, step
    assert inspect.getdoc(fn), f"{step}: the docstring is the step's help"
    assert typing.get_type_hints(fn).get("params") is STEP_PARAMS.get(step), step


def test_parser_has_the_files_and_one_option_per_parameter() -> None:
    parser = step_parser("clusters", step_function("clusters"))
    text = parser.format_help()
    assert "--max-dtw-tiles" in text and schema_property("cluster.gamma")["description"][:30] in text
    args = vars(parser.parse_args(["--grid", "g", "--series", "s", "--k", "4", "--model", "geo", "--out", "o",
                                   "--metrics", "m", "--gamma", "0.1", "--params", '{"n_init": 3}']))
    assert (args["k"], args["truth"], args["param_gamma"], args["params"]) == (4, None, 0.1, '{"n_init": 3}')
    with pytest.raises(SystemExit):
        parser.parse_args(["--grid", "g"])  # the files are required


def test_a_step_run_by_hand_takes_the_schema_defaults(tmp_path, caplog) -> None:
    """python -m landtaxa series ... --max-missing 0.4: the one parameter given, and the run done."""
    valid = np.array([True, False, True])
    row = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=3, height=1, tile_size=1,
               bands=[1], dtype="uint16")
    for t, date in enumerate(["2020-01-01", "2020-02-01"]):
        ok = valid if t == 0 else np.ones(3, bool)
        with embedding_store(tmp_path / f"{date}.zarr", row, 2, ok) as store:
            store.put(np.flatnonzero(ok), np.full((int(ok.sum()), 2), t, np.float32))
    rc = main(["series", "--embeddings", str(tmp_path / "2020-01-01.zarr"), str(tmp_path / "2020-02-01.zarr"),
               "--dates", "2020-01-01", "2020-02-01", "--out", str(tmp_path / "s.npz"), "--max-missing", "0.4"])
    assert rc == 0
    s = load_npz(tmp_path / "s.npz")
    assert s["tile_ids"].tolist() == [0, 2]  # tile 1 misses half the dates: more than 0.4
    rc = main(["series", "--embeddings", str(tmp_path / "2020-01-01.zarr"), str(tmp_path / "2020-02-01.zarr"),
               "--dates", "2020-01-01", "2020-02-01", "--out", str(tmp_path / "s.npz")])
    assert rc == 0 and load_npz(tmp_path / "s.npz")["tile_ids"].tolist() == [0, 1, 2]  # the default: 0.5


def test_errors_are_one_line_and_the_exit_status_is_1(tmp_path, caplog) -> None:
    logger = logging.getLogger("landtaxa")
    logger.addHandler(caplog.handler)
    try:
        rc = main(["series", "--embeddings", str(tmp_path / "a.zarr"), "--dates", "2020-01-01", "2020-02-01",
                   "--out", str(tmp_path / "s.npz")])
    finally:
        logger.removeHandler(caplog.handler)
    assert rc == 1 and "1 embedding files for 2 dates" in caplog.text
    with pytest.raises(SystemExit, match="unknown step 'cluster'; steps: demo, grid"):
        main(["cluster"])


def test_help_lists_every_step(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {step} " in out for step in STEPS)


def test_steps_that_draw_products_start_without_scikit_learn_or_torch() -> None:
    """Each job is a new process: scikit-learn (with scipy.stats) and torch take about 1 s each to load, paid by
    every map, figure and table job of a run unless only the steps that compute with them import them."""
    import subprocess
    import sys

    light = ["grid", "align", "embed_baseline", "series", "clusters", "metrics", "stability", "map", "coverage",
             "confidence", "evolution", "kinds", "tiles", "viewer", "representatives", "analysis", "k_choice"]
    code = ("import sys; from landtaxa.cli import step_function\n"
            f"for step in {light!r}: step_function(step)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
