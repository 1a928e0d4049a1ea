"""Tests of the run plan (landtaxa.plan): what the workflow decides from the config, without snakemake."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from landtaxa.configcheck import check_config
from landtaxa.inputs.demo.scene import make_demo
from landtaxa.inputs.demo.spec import DemoSpec, demo_dates
from landtaxa.params import SCHEMA
from landtaxa.plan import PlanError, RunPlan

CONFIG = yaml.safe_load((SCHEMA.parents[2] / "config" / "config.yaml").read_text())
SPEC = DemoSpec(size=64, n_dates=4)


def plan_of(workdir: Path, **overrides) -> RunPlan:
    config = copy.deepcopy(CONFIG)
    for key, value in overrides.items():
        node = config
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    check_config(config, SCHEMA)
    return RunPlan.from_config(config, workdir)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A folder of per-date, per-granule GeoTIFFs, as a user's archive looks."""
    out = tmp_path_factory.mktemp("archive")
    make_demo(SPEC, out)
    return out / "images"


def test_demo_plan(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    # the demo's 1,024 tiles get the fewest members (3): geo, geo_m1, geo_m2, each refined
    assert plan.models == ["spectral", "means", "geo", "refined", "consensus"]
    assert plan.parents == {"refined": "geo", "refined_m1": "geo_m1", "refined_m2": "geo_m2"}
    assert plan.trained == ["geo", "geo_m1", "geo_m2", "refined", "refined_m1", "refined_m2"]
    assert plan.encoder_of("spectral") == "spectral" and plan.encoder_of("means") == "means"
    assert plan.main_candidates == ["consensus", "means"] and plan.consensus_of == "refined"
    assert plan.k_list == [7, 5, 9] and plan.k_main == 7 and plan.analysed_k == [7]
    dates = demo_dates(DemoSpec())
    assert plan.dates == dates and plan.train_dates == dates and not plan.retrain
    assert plan.truth == "results/demo/truth.tif"
    assert len(plan.grid_images()) == 4 and all("2023-01-23" in p for p in plan.grid_images())
    outputs = plan.final_outputs()
    for model in plan.models:  # the contracts every run writes
        assert f"results/maps/{model}_clusters.tif" in outputs
        assert (f"results/analysis/{model}/k_choice.csv" in outputs) == (model != "consensus")
    assert "results/metrics.json" in outputs and "results/analysis/geo/k5/clusters.tif" not in outputs
    assert "results/maps/consensus_confidence.tif" in outputs
    assert plan.params("evolution") == '{"merge_overlap": 0.25}'


def test_refinement_rounds_chain_the_models(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, refine__iterations=3, analysis__all_k=True, members__count=1)
    assert plan.models == ["spectral", "means", "geo", "refined1", "refined2", "refined"]
    assert plan.parents == {"refined1": "geo", "refined2": "refined1", "refined": "refined2"}
    assert plan.main_candidates == ["refined"]
    assert plan.refine_clusters("refined2") == "results/clusters/train/refined1/k7.npz"
    assert "results/analysis/geo/k5/clusters.tif" in plan.final_outputs()  # every K analysed, with its map
    assert plan_of(tmp_path, refine__iterations=0, members__count=1).models == ["spectral", "means", "geo"]
    assert plan_of(tmp_path, refine__iterations=0).consensus_of == "geo"


def test_training_dates_are_fixed_by_the_first_grid(archive: Path, tmp_path: Path) -> None:
    dates = demo_dates(SPEC)
    first = plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3)
    assert first.dates == dates and first.train_dates == dates
    # the first grid records them: later runs train on those, whatever dates were added since
    (tmp_path / "results").mkdir()
    (tmp_path / "results/grid.json").write_text(json.dumps({"train_dates": dates[:3]}))
    later = plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3)
    assert later.dates == dates and later.train_dates == dates[:3] and not later.retrain
    assert later.refine_clusters("refined") == "results/clusters/train/geo/k3.npz"
    # scaling images come from the training dates only (up to 16, spread over them)
    assert all(any(d in p for d in dates[:3]) for p in later.scale_images())
    assert len(later.scale_images(max_images=5)) == 5
    # all: every run's dates; a list: those
    every = plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3, train__dates="all")
    assert every.train_dates == dates and every.retrain
    assert every.refine_clusters("refined") == "results/clusters/geo/k3.npz"
    chosen = plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3,
                     train__dates=[dates[1], dates[0]])
    assert chosen.train_dates == dates[:2]


def test_training_dates_no_longer_in_the_archive_are_named(archive: Path, tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results/grid.json").write_text(json.dumps({"train_dates": ["1999-01-01"]}))
    with pytest.raises(PlanError, match=r"results/grid.json records the training dates .* 1999-01-01, not in the "
                                        "inventory"):
        plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3)
    with pytest.raises(PlanError, match="train.dates lists 2000-02-02, not in the inventory"):
        plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3, train__dates=["2000-02-02"])


def test_images_and_masks_of_a_date(archive: Path, tmp_path: Path) -> None:
    plan = plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3)
    date = demo_dates(SPEC)[1]
    assert [Path(p).name for p in plan.images_of(date)] == [f"{date}_g{r}{c}.tif" for r in "01" for c in "01"]
    assert plan.masks_of(date) == []
    assert plan.aligned([date]) == [f"results/aligned/{date}.tif"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"n_clusters": 30}, "n_clusters asks for K=30 clusters but there are only 16 tiles"),
    ({"tile_size": 128}, "config key tile_size: 128 px is larger than the region"),
    ({"truth": "nowhere.tif"}, "nowhere.tif: truth raster not found (config key truth)"),
    ({"encoder__name": "spectral"}, "config key encoder.name: spectral learns nothing from triplets"),
])
def test_runs_that_cannot_work_stop_in_the_plan(archive: Path, tmp_path: Path, overrides: dict, message: str) -> None:
    config = {"images": str(archive), "truth": None, "tile_size": 16, "n_clusters": 3, **overrides}
    with pytest.raises(PlanError) as err:
        plan_of(tmp_path, **config)
    assert message in str(err.value)


def test_disk_need_shrinks_as_outputs_exist(archive: Path, tmp_path: Path) -> None:
    plan = plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3)
    before = plan.disk_need(tmp_path)
    date = plan.dates[0]
    (tmp_path / "results/aligned").mkdir(parents=True)
    (tmp_path / f"results/aligned/{date}.tif").write_bytes(b"x")
    assert 0 < plan.disk_need(tmp_path) < before
    assert "need about" in plan.check_disk(tmp_path)
    config = copy.deepcopy(plan.config)
    config["disk"]["margin_gb"] = 1e9
    with pytest.raises(PlanError, match="not enough disk space"):
        RunPlan.from_config(config, tmp_path).check_disk(tmp_path)
    assert np.isfinite(before)


def test_the_demo_trains_its_own_encoder(archive: Path, tmp_path: Path) -> None:
    demo = plan_of(tmp_path)
    assert json.loads(demo.params("train"))["encoder"] == "tilenet-lite"
    assert demo.config["encoder"]["name"] == "tilenet-lite" and CONFIG["encoder"]["name"] == "tilenet"  # a copy
    own = plan_of(tmp_path, images=str(archive), truth=None, tile_size=16, n_clusters=3)
    assert json.loads(own.params("train"))["encoder"] == own.encoder_of("geo") == "tilenet"


def test_the_baselines_series_are_not_standardised(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    assert json.loads(plan.params("series", "geo"))["standardise"] == "zscore"
    assert json.loads(plan.params("series", "spectral"))["standardise"] == "none"
    assert json.loads(plan.params("series", "means"))["standardise"] == "none"


def test_members_train_the_chain_again_from_their_own_seeds(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, members__count=2, seed=4)
    assert plan.members == {"geo": ["geo", "geo_m1"], "refined": ["refined", "refined_m1"]}
    assert plan.parents == {"refined": "geo", "refined_m1": "geo_m1"}
    for step, model in (("train", "geo_m1"), ("refine", "refined_m1"), ("clusters", "refined_m1")):
        assert json.loads(plan.params(step, model))["seed"] == 1004  # member i: seed + 1000 i
    assert json.loads(plan.params("clusters", "refined"))["seed"] == 4
    # the consensus job's memory and time come from the members' labels and the combined model's series
    assert plan.resources("consensus", {"k": "7"})["mem_mb"] > 0


def test_small_regions_get_more_members(tmp_path: Path) -> None:
    from landtaxa.plan import member_count

    setting = {"count": None, "tiles": 2000, "min": 3, "max": 5}
    assert member_count(setting, 1024) == 3  # the demo
    assert member_count(setting, 110) == 5  # the Slovenia series
    assert member_count(setting, 48_400) == 3  # the paper's region
    assert member_count(setting, 500) == 4
    assert member_count({**setting, "count": 1}, 110) == 1


def test_a_cpu_run_is_told_how_long_it_takes_and_what_to_change(tmp_path: Path) -> None:
    """The paper's region (22,000 px, 100 px tiles, 20 dates, TileNet) planned for this CPU: weeks of work, said
    before any job runs, with what to change; the same on a cluster gets GPU estimates and no such line."""
    paper = {"demo__size": 22_000, "demo__n_dates": 20, "demo__encoder": "tilenet", "tile_size": 100}
    plan = plan_of(tmp_path, **paper, compute__gpu="auto")
    plan.cores = 8
    said = " | ".join(plan.time_outlook())
    assert "without a GPU, training and refining will take about" in said and "on this CPU (tilenet" in said
    assert "that is long: use the lighter encoder (encoder.name: tilenet-lite" in said
    # the training budget (train.max_hours) cut the epochs or the triplets: said, with the numbers
    assert "train: train.max_hours 8: 3 epochs of 100,000 triplets would take about" in said
    assert plan.resources("train")["runtime"] <= 24 * 60  # within compute.max_hours
    cluster = plan_of(tmp_path, **paper, compute__gpu="auto")
    cluster.cluster = True
    assert cluster.gpu and not any("without a GPU" in line for line in cluster.time_outlook())
    cpu, gpu = plan.resources("embed", {"model": "geo"}), cluster.resources("embed", {"model": "geo"})
    assert gpu["gpu_mem_mb"] > 0 == cpu["gpu_mem_mb"] and gpu["runtime"] < cpu["runtime"]
    small = plan_of(tmp_path)  # the demo: minutes on any CPU, nothing to change
    small.cores = 2
    assert not any("that is long" in line for line in small.time_outlook())


def test_an_embedding_job_embeds_with_every_member_of_its_model(tmp_path: Path) -> None:
    """One job per date and model of the chain: the time and disk of its members together, one member's memory."""
    plan = plan_of(tmp_path, members__count=3)
    assert plan.member_suffixes == ["", "_m1", "_m2"] and plan.members["refined"][2] == "refined_m2"
    date = plan.dates[0]
    one = plan.job_needs("embed", {"model": "geo", "date": date})[1]
    family = plan.job_needs("embed", {"family": "geo", "date": date})[1]
    assert family.host == one.host and family.gpu == one.gpu
    assert family.seconds == pytest.approx(3 * one.seconds) and family.disk == 3 * one.disk
    embed = [w for rule, w in plan.encoder_jobs() if rule == "embed"]
    assert len(embed) == len(plan.chain) * len(plan.dates) and {w["family"] for w in embed} == set(plan.chain)


def test_compute_gpu_decides_where_the_gpu_rules_run(tmp_path: Path) -> None:
    assert plan_of(tmp_path, compute__gpu=True).compute("embed").gpu
    assert not plan_of(tmp_path, compute__gpu=False, device="cuda").compute("embed").gpu
    plan = plan_of(tmp_path, compute__gpu="auto", device="cpu")
    plan.cluster = True
    assert plan.compute("train").gpu and not plan.compute("embed_baseline").gpu and not plan.compute("clusters").gpu


def test_only_jobs_estimated_beyond_the_cap_are_named(tmp_path: Path) -> None:
    """A country (100,000 px, 50 dates) on a cluster: a baseline's embedding computes band statistics, so it is
    not estimated (and named as too long) as if it ran the run's TileNet on a CPU."""
    country = {"demo__size": 100_000, "demo__n_dates": 50, "demo__encoder": "tilenet", "tile_size": 100}
    plan = plan_of(tmp_path, **country, compute__gpu="auto")
    plan.cluster = True
    named = {line.split(":")[0] for line in plan.time_outlook() if "beyond compute.max_hours" in line}
    cap = 24 * 60
    for rule in ("embed_baseline", "embed", "train", "refine"):
        wildcards = ({"baseline": "spectral"} if rule == "embed_baseline"
                     else {"model": "geo", "family": "refined", "refined": "refined"})
        assert (rule in named) == (plan.resources(rule, {**wildcards, "date": plan.dates[0]})["runtime"] >= cap), rule
    assert plan.resources("embed_baseline", {"baseline": "spectral", "date": plan.dates[0]})["runtime"] < cap / 4
