"""The workflow through a real (one-node) SLURM cluster, with the project's SLURM profile.

A module fixture starts slurmctld + slurmd + munge (slurm_cluster.py) as root, runs the tiny demo
config (configs/tiny.yaml) up to its maps and metrics through ``--executor slurm`` with
``workflow/profiles/slurm`` (its site values replaced on the command line by the test cluster's
partition and account), and runs the same locally (``--cores 2``) meanwhile in another folder.
The tests then read SLURM's own records (the jobcomp/filetxt log and ``scontrol show job``) to
check that every snakemake job was one SLURM job, that the GPU rules and only they asked for a GPU,
and that both runs gave the same taxonomy. The partition has a MaxTime (:data:`MAX_MINUTES`) that
sbatch enforces, and the run says so in its config (``compute.max_hours``): a request beyond it fails
the run; MaxTime is below the 10 minutes every job would otherwise ask for at least, so every request
was capped to it.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from runner import CONFIGS, REPO, Snakemake
from slurm_cluster import SlurmCluster

from landtaxa.storage import load_npz

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = REPO / "workflow" / "profiles" / "slurm"
MODELS = ("spectral", "means", "geo", "refined")  # configs/tiny.yaml: one member
GPU_RULES = {"train", "refine", "embed"}  # embed_baseline computes band statistics: no GPU
TARGETS = ["results/metrics.json", *(f"results/maps/{m}_clusters.tif" for m in MODELS)]
PARTITION, ACCOUNT = "debug", "ci"  # the test cluster's values for the profile's SITE keys
MAX_MINUTES = 9  # the partition's MaxTime; compute.max_hours of the runs below
# Seconds. The run's 36 jobs take about 4 minutes here, 2 at a time (the node's two CPUs, shared
# with the local run and with the other test process's work; each status check waits up to 10 s
# longer than the last while nothing finishes).
SLURM_TIMEOUT, LOCAL_TIMEOUT = 900, 800


@dataclass
class Runs:
    cluster: SlurmCluster
    slurm: Path  # workdir of the run through SLURM
    local: Path  # workdir of the local run
    output: str  # snakemake's output of the SLURM run


def profile_overrides() -> list[str]:
    """The profile's resource keys with the site's partition and account set to the test cluster's.

    A key given on the command line replaces the profile's whole key, so every other entry
    (runtime, mem_mb, ...) is passed on unchanged.
    """
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    site = {"slurm_partition": PARTITION, "slurm_account": ACCOUNT}
    defaults = {**profile["default-resources"], **site}
    args = ["--default-resources", *(f"{k}={v}" for k, v in defaults.items()), "--set-resources"]
    for rule, resources in profile["set-resources"].items():
        args += [f"{rule}:{k}={site.get(k, v)}" for k, v in resources.items()]
    return args


def overlay(workdir: Path) -> Path:
    """The cluster's longest run, as a config says it (config key compute.max_hours)."""
    path = workdir / "cluster.yaml"
    path.write_text(json.dumps({"compute": {"max_hours": MAX_MINUTES / 60}}))
    return path


def snakemake_cmd(workdir: Path, timeout: int, *args: str) -> list[str]:
    run = Snakemake().command(workdir, *TARGETS, "--workflow-profile", "none", *args,
                              configs=[CONFIGS / "tiny.yaml", overlay(workdir)])
    return ["timeout", "-k", "30", str(timeout), *run]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("a SLURM test cluster needs Linux")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged for the test cluster needs root")
    # Two stand-in GPUs: the node's two CPUs then run two 1-CPU embedding jobs at once, as a
    # GPU node would; each GPU job still asks for one (--gpus=1), which is what is checked.
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm-cluster"), partition=PARTITION, gpus=2,
                           max_time=MAX_MINUTES)
    with cluster:
        yield cluster
    # teardown check: nothing of the cluster is left behind
    assert not cluster.running_daemons(), f"daemons still running after stop(): {cluster.running_daemons()}"
    assert not Path("/etc/slurm/slurm.conf").is_symlink(), "stop() left /etc/slurm/slurm.conf behind"


@pytest.fixture(scope="module")
def runs(cluster: SlurmCluster, tmp_path_factory) -> Runs:
    slurm_dir = tmp_path_factory.mktemp("slurm run")  # a space in the path on purpose
    local_dir = tmp_path_factory.mktemp("local run")
    # The local run goes on meanwhile: the SLURM run mostly waits between status checks.
    with open(local_dir / "snakemake.log", "w") as local_log:
        local = subprocess.Popen(snakemake_cmd(local_dir, LOCAL_TIMEOUT, "--cores", "2"), stdout=local_log,
                                 stderr=subprocess.STDOUT, cwd=local_dir)
        try:
            slurm = subprocess.run(
                snakemake_cmd(slurm_dir, SLURM_TIMEOUT, "--profile", str(PROFILE), *profile_overrides(),
                              "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
                              "--slurm-keep-successful-logs"),
                env=cluster.env, cwd=slurm_dir, capture_output=True, text=True, timeout=SLURM_TIMEOUT + 60)
        finally:
            local.wait(timeout=LOCAL_TIMEOUT + 60)
    output = slurm.stdout + slurm.stderr
    (slurm_dir / "snakemake.log").write_text(output)
    assert slurm.returncode == 0, f"SLURM run failed ({slurm.returncode}):\n{output[-5000:]}\n{cluster.logs()}"
    local_out = (local_dir / "snakemake.log").read_text()
    assert local.returncode == 0, f"local run failed ({local.returncode}):\n{local_out[-5000:]}"
    return Runs(cluster, slurm_dir, local_dir, output)


def job_stats(output: str) -> collections.Counter:
    """Snakemake's own 'Job stats' table: jobs per rule (without the local target rule all)."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = collections.Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)})
    counts.pop("all", None)
    return counts


def rule_of(comment: str) -> str:
    """The plugin puts ``rule_<rule>`` or ``rule_<rule>_wildcards_<values>`` in --comment."""
    m = re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", comment)
    assert m, comment
    return m[1]


def our_jobs(runs: Runs) -> tuple[str, dict[str, str], list[dict[str, str]], list[dict[str, str]]]:
    """(run id, SLURM job id -> slurm log, scontrol records, jobcomp records) of the SLURM run."""
    run_id = re.search(r"SLURM run ID: (\S+)", runs.output)[1]
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: (.+?)\)\.?$", runs.output, re.M))
    jobs = [j for j in runs.cluster.jobs() if j["JobName"] == run_id]
    jobcomp = [r for r in runs.cluster.jobcomp_records() if r["Name"] == run_id]
    return run_id, submitted, jobs, jobcomp


def test_every_job_ran_as_one_slurm_job(runs: Runs) -> None:
    run_id, submitted, jobs, jobcomp = our_jobs(runs)
    expected = job_stats(runs.output)
    assert sum(expected.values()) >= 20 and GPU_RULES <= set(expected), expected
    # the job completion log: exactly one COMPLETED record per submitted job, in our folder
    assert sorted(r["JobId"] for r in jobcomp) == sorted(submitted), (submitted, jobcomp)
    assert len(jobcomp) == sum(expected.values())
    for rec in jobcomp:
        assert (rec["JobState"], rec["ExitCode"]) == ("COMPLETED", "0:0"), rec
        assert (rec["Partition"], rec["Account"]) == (PARTITION, ACCOUNT), rec
        assert rec["WorkDir"] == str(runs.slurm), rec
    # slurmctld's records: the plugin's --comment names the rule of each job
    assert sorted(j["JobId"] for j in jobs) == sorted(submitted)
    assert collections.Counter(rule_of(j["Comment"]) for j in jobs) == expected
    for job in jobs:
        rule = rule_of(job["Comment"])
        assert f"/rule_{rule}/" in submitted[job["JobId"]]  # snakemake's slurm log of that job
        assert Path(submitted[job["JobId"]]).exists()


def test_gpu_rules_and_only_they_asked_for_a_gpu(runs: Runs) -> None:
    _, _, jobs, _ = our_jobs(runs)
    assert jobs
    for job in jobs:
        rule = rule_of(job["Comment"])
        gpu_request = " ".join(job.get(key, "") for key in ("TresPerJob", "TresPerNode", "TresPerTask"))
        if rule in GPU_RULES:
            assert "gres:gpu:1" in job["TresPerJob"], job  # sbatch --gpus=1
        else:
            assert "gpu" not in gpu_request, job


def run_plan(workdir: Path):
    """The plan of the runs (config/config.yaml with configs/tiny.yaml merged over it, nested keys too)."""
    from landtaxa.configcheck import check_config
    from landtaxa.plan import RunPlan

    def merged(base: dict, over: dict) -> dict:
        return {**base, **{k: merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in over.items()}}

    config = merged(yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                    yaml.safe_load((CONFIGS / "tiny.yaml").read_text()))
    config = merged(config, json.loads(overlay(workdir).read_text()))
    check_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    return RunPlan.from_config(config, workdir, cluster=True)


def test_resources_come_from_the_plan(runs: Runs) -> None:
    """Memory and time: every rule's request from the run's sizes (landtaxa.resources), as sbatch got it."""
    plan = run_plan(runs.slurm)
    _, _, jobs, jobcomp = our_jobs(runs)
    tres = {j["JobId"]: dict(kv.split("=", 1) for kv in j["TRES"].split(",")) for j in jobs}
    limit = {r["JobId"]: r["TimeLimit"] for r in jobcomp}
    by_rule = collections.defaultdict(list)
    for job in jobs:
        by_rule[rule_of(job["Comment"])].append(job["JobId"])
    for rule in ("train", "demo"):  # rules without wildcards: one job each
        want = plan.resources(rule)
        for job_id in by_rule[rule]:
            assert (tres[job_id]["mem"], limit[job_id]) == (f"{want['mem_mb']}M", str(want["runtime"])), rule
    for job_id in by_rule["train"]:
        assert tres[job_id]["cpu"] == "2"
    # no job asked for longer than the partition's MaxTime (sbatch would have refused it): all were capped there
    assert {limit[job_id] for job_id in limit} == {str(MAX_MINUTES)}, limit


@pytest.mark.parametrize("model", MODELS)
def test_slurm_run_equals_local_run(runs: Runs, model: str) -> None:
    metrics = {}
    for name, work in (("slurm", runs.slurm), ("local", runs.local)):
        metrics[name] = json.loads((work / "results/metrics.json").read_text())[model]
    s, loc = metrics["slurm"], metrics["local"]
    assert (s["k"], s["n_tiles"], s["n_dates"]) == (loc["k"], loc["n_tiles"], loc["n_dates"])
    for key in ("ari", "nmi", "inertia"):
        assert math.isclose(s[key], loc[key], rel_tol=1e-6), (key, s[key], loc[key])

    k = s["k"]
    a = load_npz(runs.slurm / f"results/clusters/{model}/k{k}.npz")
    b = load_npz(runs.local / f"results/clusters/{model}/k{k}.npz")
    np.testing.assert_array_equal(a["tile_ids"], b["tile_ids"])
    np.testing.assert_array_equal(a["labels"], b["labels"])

    maps = []
    for work in (runs.slurm, runs.local):
        with rasterio.open(work / f"results/maps/{model}_clusters.tif") as src:
            maps.append((src.read(), src.transform, src.crs, src.nodata))
    np.testing.assert_array_equal(maps[0][0], maps[1][0])
    assert maps[0][1:] == maps[1][1:]
