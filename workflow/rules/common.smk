# Glue: the config checked, the run plan, wildcard constraints and one-line input functions.
# Everything decided from the config lives in the package (landtaxa.plan), unit-tested there.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from landtaxa.configcheck import ConfigError, check_config  # noqa: E402
from landtaxa.plan import PlanError, RunPlan  # noqa: E402
from landtaxa.runtime import export_http, expose_package  # noqa: E402

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

# One line naming the key (plugins loaded first: their names are valid too), defaults filled in.
# A STAC API given as images is searched where the plan is made, not again in a job that re-plans.
# A run that submits its jobs (a cluster executor) has Snakemake's `nodes` set; a local run has its cores.
try:
    check_config(config, SCHEMA)
    PLAN = RunPlan.from_config(config, search=workflow.is_main_process,
                               cluster=workflow.resource_settings.nodes is not None,
                               cores=workflow.resource_settings.cores)
    if workflow.is_main_process:  # the run's own checks; a job that plans again (a cluster job) repeats neither
        print(f"landtaxa: {PLAN.check_disk()}", file=sys.stderr)
        for line in PLAN.time_outlook():
            print(f"landtaxa: {line}", file=sys.stderr)
except (ConfigError, PlanError) as err:
    raise WorkflowError(f"landtaxa: {err}")
# Jobs inherit the environment: `python -m landtaxa` finds this checkout, inside a conda env too; the
# HTTP settings go as the config gives them (env:NAME headers are read by each job).
expose_package()
export_http(config["http_headers"], config["http"], config["sign_hrefs"])
R = PLAN.results
CONSENSUS_RUN = "consensus" in PLAN.models  # several members, combined into the consensus model


wildcard_constraints:
    date=r"\d{4}-\d{2}-\d{2}",
    model="|".join(PLAN.all_models),
    refined="|".join(PLAN.parents) or "__none__",
    k=r"\d+",


def series_of(wc):
    """The series a model's clusters are read through: its own, or for the consensus the series of the model
    whose members it combines."""
    return f"{R}/series/{PLAN.consensus_of if wc.model == 'consensus' else wc.model}.npz"


def p(step, wildcard=None):
    """A step's parameters (JSON) for its params, per model when ``wildcard`` names the model's
    wildcard: the step reruns when one of them changes."""
    return (lambda wc: PLAN.params(step, wc[wildcard])) if wildcard else PLAN.params(step)


def threads(rule):
    """A rule's threads, as its estimates assume them (landtaxa.resources)."""
    return PLAN.threads(rule)


def mem(rule):
    """A job's host memory (MB) from the run's sizes (landtaxa.resources), growing with each retry."""
    return lambda wc, attempt: PLAN.resources(rule, wc, attempt)["mem_mb"]


def gpu_mem(rule):
    """A GPU job's GPU memory (MB; 0 where it runs on the CPU), apart from its host memory (mem_mb)."""
    return lambda wc: PLAN.resources(rule, wc)["gpu_mem_mb"]


def runtime(rule):
    """A job's time limit (minutes) from the run's sizes, growing with each retry."""
    return lambda wc, attempt: PLAN.resources(rule, wc, attempt)["runtime"]


def disk(rule):
    """A job's disk (MB): the outputs it writes."""
    return lambda wc: PLAN.resources(rule, wc)["disk_mb"]


def report_figure(folder, name, caption, category, figure):
    """A per-model, per-K output of the report, under results/<folder>/<model>/k<K>/."""
    return report(
        f"{R}/{folder}/{{model}}/k{{k}}/{name}",
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory="{model}",
        labels={"model": "{model}", "K": "{k}", "figure": figure},
    )
