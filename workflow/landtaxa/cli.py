"""``python -m landtaxa <step> ...``: run one workflow step, as the rules do or by hand.

Every step is a function of the package taking its files (and wildcards such as ``k``) as
keyword arguments, plus ``params``, the step's parameter object (:mod:`landtaxa.params`).
The command line of a step is generated from that function: one option per argument, and
``--params`` (JSON, as the workflow passes it) with one option per parameter on top, for
running a step by hand; a parameter given neither way takes the config schema's default.
Only the module of the step being run is imported, so a job loads what its step needs.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import typing

from landtaxa.params import schema_property
from landtaxa.peaks import record_at_exit
from landtaxa.runtime import apply_http, inherited_plugins, load_plugins
from landtaxa.storage import get_logger

log = get_logger()

# step -> the function that runs it ("module:function")
STEPS = {
    "demo": "landtaxa.inputs.demo.scene:demo_step",
    "grid": "landtaxa.inputs.grid:grid_step",
    "align": "landtaxa.inputs.align:align_step",
    "train": "landtaxa.learning.train:train_step",
    "refine": "landtaxa.learning.train:refine_step",
    "untrained": "landtaxa.learning.train:untrained_step",
    "embed": "landtaxa.learning.embed:embed_step",
    "embed_baseline": "landtaxa.learning.pixels:baseline_step",
    "series": "landtaxa.clustering.series:series_step",
    "truth": "landtaxa.clustering.metrics:truth_step",
    "clusters": "landtaxa.clustering.clusters:clusters_step",
    "consensus": "landtaxa.clustering.consensus:consensus_step",
    "metrics": "landtaxa.clustering.metrics:metrics_step",
    "map": "landtaxa.products.maps:map_step",
    "coverage": "landtaxa.products.maps:coverage_step",
    "confidence": "landtaxa.products.maps:confidence_step",
    "analysis": "landtaxa.products.analysis:analysis_step",
    "representatives": "landtaxa.products.analysis:representatives_step",
    "stability": "landtaxa.products.analysis:stability_step",
    "evolution": "landtaxa.products.evolution:evolution_step",
    "k_choice": "landtaxa.products.analysis:kchoice_step",
    "kinds": "landtaxa.products.analysis:kinds_step",
    "tiles": "landtaxa.products.tables:tiles_step",
    "viewer": "landtaxa.products.viewer:viewer_step",
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def step_function(step: str) -> typing.Callable:
    if step not in STEPS:
        raise SystemExit(f"landtaxa: unknown step {step!r}; steps: {', '.join(STEPS)}")
    module, name = STEPS[step].split(":")
    return getattr(importlib.import_module(module), name)


def _value(text: str) -> object:
    """A parameter given on the command line: JSON (numbers, lists, null, true), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def step_parser(step: str, fn: typing.Callable) -> argparse.ArgumentParser:
    """The parser of one step, generated from its function's keyword arguments and parameter object."""

    hints = typing.get_type_hints(fn)
    parser = argparse.ArgumentParser(prog=f"landtaxa {step}", description=inspect.getdoc(fn))
    for name, arg in inspect.signature(fn).parameters.items():
        if name == "params":
            continue
        kind = hints.get(name, str)
        options: dict = {"required": arg.default is inspect.Parameter.empty,
                         "default": None if arg.default is inspect.Parameter.empty else arg.default}
        if list in (typing.get_origin(kind), *map(typing.get_origin, typing.get_args(kind))):
            options["nargs"] = "+" if options["required"] else "*"
        elif int in (kind, *typing.get_args(kind)):
            options["type"] = int
        parser.add_argument(f"--{name.replace('_', '-')}", **options)
    if "threads" not in inspect.signature(fn).parameters:
        parser.add_argument("--threads", type=int, default=None, help="threads of the numerical libraries")
    if "params" in hints:
        group = parser.add_argument_group("parameters (config keys; unset ones take the schema's default)")
        group.add_argument("--params", default="{}", help="all parameters as one JSON object (the workflow's way)")
        for field, key in hints["params"].keys().items():
            group.add_argument(f"--{field.replace('_', '-')}", dest=f"param_{field}", type=_value, default=None,
                               metavar="VALUE", help=f"{key}: {schema_property(key).get('description', '')}")
    return parser


def run(argv: list[str]) -> None:
    """Parse one step's command line and run it."""

    step, rest = argv[0], argv[1:]
    if "--threads" in rest:  # before the step's module loads numpy, whose thread pools read these once
        threads = rest[rest.index("--threads") + 1]
        os.environ.update({var: threads for var in THREAD_VARIABLES})
    load_plugins(inherited_plugins())
    apply_http()  # GDAL's HTTP retries, time-outs and headers (env:NAME values read here) for remote reads
    fn = step_function(step)
    args = vars(step_parser(step, fn).parse_args(rest))
    accepted = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in args.items() if k in accepted and k != "params"}
    params_cls = typing.get_type_hints(fn).get("params")
    if params_cls is not None:
        overrides = {k[len("param_"):]: v for k, v in args.items() if k.startswith("param_") and v is not None}
        kwargs["params"] = params = params_cls.from_json(args["params"], overrides)
        if getattr(params, "gdal_cache_mb", None):
            os.environ["GDAL_CACHEMAX"] = str(params.gdal_cache_mb)
    fn(**kwargs)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    record_at_exit(argv)  # with $LANDTAXA_PEAKS set (benchmarks, tests): this step's peak memory and run time
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: landtaxa <step> [options]   (landtaxa <step> --help for a step's options)\n\nsteps:")
        for step in STEPS:
            print(f"  {step:16} {(inspect.getdoc(step_function(step)) or '').splitlines()[0]}")
        return 0
    try:
        run(argv)
    except (ValueError, FileNotFoundError, MemoryError) as err:
        log.error("%s", err)
        return 1
    return 0
