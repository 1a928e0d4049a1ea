"""Tests of the jobs' resource requests (landtaxa.resources): each step run on synthetic data at a few
sizes, as the workflow runs it, and its peak RSS (VmHWM, recorded by the step itself: landtaxa.peaks)
compared with the estimate the rules request, before the safety factor."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from landtaxa.clustering.series import save_series
from landtaxa.inputs.grid import Grid
from landtaxa.params import STEP_PARAMS, schema_defaults
from landtaxa.peaks import run_step
from landtaxa.plan import RunPlan
from landtaxa.resources import MB, RULES, SAFETY, TIME_SAFETY, Compute, Sizes, gpu_rules, job_needs, job_resources

PACKAGE = str(Path(__file__).resolve().parents[1] / "workflow")
T, D, K = 4, 32, 6


def peak_mb(args: list[str], tmp: Path) -> float:
    """Run the step ``args`` as the workflow does (its own process); its peak RSS in MB (landtaxa.peaks)."""
    return run_step(args, tmp / "peaks.jsonl", {"PYTHONPATH": PACKAGE, "OMP_NUM_THREADS": "1"})["peak_mb"]


def _region(tmp: Path, rows: int, cols: int) -> tuple[Grid, Path, list[str], list[Path]]:
    """A grid of rows x cols 1-px tiles, T dates of per-date stores with overlapping kinds, small rasters."""
    import rasterio

    grid = Grid(crs="EPSG:32630", transform=(10.0, 0.0, 400000.0, 0.0, -10.0, 4500000.0), width=cols, height=rows,
                tile_size=1, bands=[1], dtype="uint16", scale_min=[0.0], scale_max=[1000.0])
    grid.save(tmp / "grid.json")
    rng = np.random.default_rng(0)
    n = grid.n_tiles
    kinds = (np.arange(n) // cols // 10 * 7 + np.arange(n) % cols // 10) % K
    centres = rng.normal(0, 1, (K, T, D)).astype(np.float32)
    x = centres[kinds] + rng.normal(0, 0.7, (n, T, D)).astype(np.float32)
    valid = rng.uniform(size=(n, T)) > 0.05
    dates = [f"2022-{m + 1:02d}-01" for m in range(T)]
    save_series(tmp / "series_input.npz", x, np.arange(n), dates, grid, valid)
    aligned = []
    for date in dates:
        path = tmp / f"{date}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="uint16", crs=grid.crs,
                           transform=grid.affine) as dst:
            dst.write(rng.integers(1, 1000, (1, rows, cols), dtype=np.uint16))
        aligned.append(path)
    stores = sorted((tmp / "series_input_dates").glob("*.zarr"))
    return grid, tmp / "grid.json", dates, stores + aligned


def _sizes(grid: Grid) -> Sizes:
    return Sizes(n_tiles=grid.n_tiles, n_dates=T, z_dim=D, n_bands=1, tile_size=1, width=grid.width,
                 height=grid.height, k=K)


CONFIG = {"cluster": {"n_init": 1, "max_iter": 300, "method": "kmeans"},
          "analysis": {"restarts": 1, "projection_tiles": 100}}


def params_of(rule: str, overrides: dict | None = None):
    """The parameter object a rule's estimate reads: the schema's defaults with ``overrides`` (nested) over them."""
    step = RULES[rule].step
    if step is None:
        return None
    config = schema_defaults()
    for section, values in (overrides or {}).items():
        config[section] = {**config[section], **values} if isinstance(values, dict) else values
    return STEP_PARAMS[step].from_config(config)


SERIES_STEPS = ("series", "clusters", "analysis", "evolution", "consensus")  # what reads the series: at both sizes


@pytest.mark.parametrize(("rows", "cols"), [(50, 60), (300, 200)])  # 3,000 and 60,000 tiles
def test_requests_are_above_the_measured_peaks(tmp_path: Path, rows: int, cols: int) -> None:
    grid, g, dates, files = _region(tmp_path, rows, cols)
    stores, aligned = files[:T], files[T:]
    s, c, ev, an = tmp_path / "s.npz", tmp_path / "k.npz", tmp_path / "ev", tmp_path / "an"
    cluster = json.dumps({"n_init": 1, "seed": 0})
    stab = json.dumps({"n_init": 1, "restarts": 1, "seed": 0})
    steps = {
        "series": ["series", "--embeddings", *map(str, stores), "--dates", *dates, "--out", str(s)],
        "clusters": ["clusters", "--grid", str(g), "--series", str(s), "--k", str(K), "--model", "geo", "--out", str(c),
                     "--metrics", str(tmp_path / "k.json"), "--distances", str(tmp_path / "kd.npz"),
                     "--params", cluster],
        "analysis": ["analysis", "--grid", str(g), "--series", str(s), "--clusters", str(c), "--model", "geo",
                     "--out-dir", str(an), "--params", '{"projection_tiles": 100}'],
        "evolution": ["evolution", "--grid", str(g), "--series", str(s), "--clusters", str(c), "--model", "geo",
                      "--labels", str(ev / "labels.parquet"), "--out-dir", str(ev)],
        "representatives": ["representatives", "--grid", str(g), "--series", str(s), "--clusters", str(c),
                            "--distances", str(tmp_path / "kd.npz"), "--aligned", *map(str, aligned), "--model", "geo",
                            "--out-dir", str(an),
                            "--params", '{"rgb_bands": null}'],
        "stability": ["stability", "--series", str(s), "--clusters", str(c), "--model", "geo", "--out",
                      str(an / "stability.json"), "--png", str(an / "stability.png"), "--params", stab],
        "map": ["map", "--grid", str(g), "--clusters", str(c), "--kinds", str(ev / "labels.parquet"), "--model",
                "geo", "--tif", str(tmp_path / "m.tif"), "--png", str(tmp_path / "m.png"), "--legend",
                str(tmp_path / "l.png")],
        "kinds": ["kinds", "--grid", str(g), "--series", str(s), "--clusters", str(c), "--stability",
                  str(an / "stability.json"), "--kinds", str(ev / "labels.parquet"), "--model", "geo",
                  "--csv", str(tmp_path / "kinds.csv"), "--json", str(tmp_path / "kinds.json")],
    }
    members = [str(tmp_path / f"member{i}.npz") for i in range(3)]
    steps["consensus"] = ["consensus", "--grid", str(g), "--series", str(s), "--members", *members, "--k", str(K),
                          "--model", "consensus", "--out", str(tmp_path / "cons.npz"), "--metrics",
                          str(tmp_path / "cons.json"), "--distances", str(tmp_path / "consd.npz"), "--confidence",
                          str(tmp_path / "conf.npz"), "--params", cluster]
    if rows * cols < 10_000:  # the steps that do not read the series, at the larger size only
        steps = {step: args for step, args in steps.items() if step in SERIES_STEPS}
    sizes = _sizes(grid)
    report = {}
    for step, args in steps.items():
        if step == "consensus":  # three members: the clustering's labels, renamed and partly shuffled
            c_ = np.load(c)
            rng = np.random.default_rng(0)
            for i, path in enumerate(members):
                lab = (c_["labels"] + i) % K
                lab[rng.random(len(lab)) < 0.2] = rng.integers(0, K)
                np.savez(path, tile_ids=c_["tile_ids"], labels=lab)
        need = job_needs(step, dataclasses.replace(sizes, members=3) if step == "consensus" else sizes,
                         params_of(step, CONFIG))
        report[step] = (round(peak_mb(args, tmp_path)), round(need.host / MB))
    print(report)
    for step, (measured, estimate) in report.items():
        assert measured < estimate, f"{step}: measured {measured} MB, estimated {estimate} MB ({report})"
        assert estimate < 4 * measured + 400, f"{step}: estimate far above the need ({report})"


def test_embedding_request_is_above_its_peak(tmp_path: Path) -> None:
    """One date embedded with two members of tilenet-lite (one after the other in the job, its memory that of one)
    on a 2-band region of 48 x 40 tiles of 8 px."""
    import rasterio

    rows, cols, ts = 48, 40, 8
    grid = Grid(crs="EPSG:32630", transform=(10.0, 0.0, 400000.0, 0.0, -10.0, 4500000.0), width=cols * ts,
                height=rows * ts, tile_size=ts, bands=[1, 2], dtype="uint16", scale_min=[0.0, 0.0],
                scale_max=[1000.0, 1000.0])
    grid.save(tmp_path / "grid.json")
    with rasterio.open(tmp_path / "a.tif", "w", driver="GTiff", width=grid.width, height=grid.height, count=2,
                       dtype="uint16", crs=grid.crs, transform=grid.affine) as dst:
        dst.write(np.random.default_rng(0).integers(1, 1000, (2, grid.height, grid.width), dtype=np.uint16))
    np.savez(tmp_path / "valid.npz", fraction=np.ones((rows, cols), np.float32))
    from landtaxa.learning.encoders import build_encoder, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", build_encoder("tilenet-lite", 2, 512),
                    {"encoder": "tilenet-lite", "in_channels": 2, "z_dim": 512, "tile_size": ts, "kind": "geo"})
    measured = peak_mb(["embed", "--grid", str(tmp_path / "grid.json"), "--model", *[str(tmp_path / "m.pt")] * 2,
                        "--aligned", str(tmp_path / "a.tif"), "--valid", str(tmp_path / "valid.npz"),
                        "--out", str(tmp_path / "e.zarr"), str(tmp_path / "e2.zarr"), "--params", '{"device": "cpu"}'],
                       tmp_path)
    assert (tmp_path / "e2.zarr").is_dir()
    sizes = Sizes(n_tiles=grid.n_tiles, n_dates=1, z_dim=512, n_bands=2, tile_size=ts, width=grid.width,
                  height=grid.height, members=2)
    estimate = job_needs("embed", sizes, encoder="tilenet-lite").host / MB
    # the spectral baseline's band statistics, in a job that loads no torch
    baseline = peak_mb(["embed_baseline", "--grid", str(tmp_path / "grid.json"), "--encoder", "spectral",
                        "--aligned", str(tmp_path / "a.tif"), "--valid", str(tmp_path / "valid.npz"),
                        "--out", str(tmp_path / "b.zarr")], tmp_path)
    baseline_estimate = job_needs("embed_baseline", dataclasses.replace(sizes, z_dim=4, members=1),
                                  encoder="spectral").host / MB
    print({"embed": (round(measured), round(estimate)), "embed_baseline": (round(baseline), round(baseline_estimate))})
    assert measured < estimate < 4 * measured, (measured, estimate)
    assert baseline < baseline_estimate < min(estimate, 4 * baseline + 400), (baseline, baseline_estimate, estimate)


def test_the_representatives_request_covers_its_figure(tmp_path: Path) -> None:
    """The representatives step reads no series; what it holds is its figure, K x representatives rows by T dates
    of tiles (here 10 x 3 by 24: about 400 MB of matplotlib buffers), which the request must cover."""
    import rasterio

    from landtaxa.clustering.clusters import cluster_series
    from landtaxa.params import ClusterParams
    from landtaxa.storage import save_npz

    n_t, k, rows, cols = 24, 10, 10, 30
    grid = Grid(crs="EPSG:32630", transform=(10.0, 0.0, 400000.0, 0.0, -10.0, 4500000.0), width=cols, height=rows,
                tile_size=1, bands=[1], dtype="uint16", scale_min=[0.0], scale_max=[1000.0])
    grid.save(tmp_path / "grid.json")
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (rows * cols, n_t, 4)).astype(np.float32)
    dates = [f"2022-{1 + t // 2:02d}-{1 + 14 * (t % 2):02d}" for t in range(n_t)]
    series = save_series(tmp_path / "s.npz", x, np.arange(rows * cols), dates, grid)
    res = cluster_series(x, k, ClusterParams.from_json('{"n_init": 1}'))
    save_npz(tmp_path / "k.npz", labels=res.labels, centroids=res.centroids, tile_ids=series.tile_ids,
             dates=np.array(dates))
    save_npz(tmp_path / "kd.npz", distances=res.distances)
    aligned = []
    for date in dates:
        aligned.append(tmp_path / f"{date}.tif")
        with rasterio.open(aligned[-1], "w", driver="GTiff", width=cols, height=rows, count=1, dtype="uint16",
                           crs=grid.crs, transform=grid.affine) as dst:
            dst.write(rng.integers(1, 1000, (1, rows, cols), dtype=np.uint16))
    measured = peak_mb(["representatives", "--grid", str(tmp_path / "grid.json"), "--series", str(tmp_path / "s.npz"),
                        "--clusters", str(tmp_path / "k.npz"), "--distances", str(tmp_path / "kd.npz"), "--aligned",
                        *map(str, aligned), "--model", "geo", "--out-dir", str(tmp_path / "an"),
                        "--params", '{"rgb_bands": null}'], tmp_path)
    sizes = Sizes(n_tiles=rows * cols, n_dates=n_t, z_dim=4, n_bands=1, tile_size=1, width=cols, height=rows, k=k)
    estimate = job_needs("representatives", sizes).host / MB
    assert measured > 500, measured  # the figure, not the imports, sets the peak
    assert measured < estimate < 2 * measured, (measured, estimate)


def test_requests_grow_with_the_data_and_the_attempt() -> None:
    small = Sizes(n_tiles=10_000, n_dates=24, z_dim=512, n_bands=4, tile_size=100, width=10_000, height=10_000)
    large = Sizes(n_tiles=500_000, n_dates=24, z_dim=512, n_bands=4, tile_size=100, width=70_800,
                  height=70_800)
    for rule in ("series", "clusters", "analysis", "evolution", "embed", "align", "map", "tiles"):
        a, b = job_resources(rule, small), job_resources(rule, large)
        assert a["mem_mb"] <= b["mem_mb"] and a["runtime"] <= b["runtime"] and a["disk_mb"] <= b["disk_mb"], rule
        assert job_resources(rule, small, attempt=2)["mem_mb"] == 2 * a["mem_mb"]
    # the steps that stream over the series stay within 3 GB at 500,000 tiles x 24 dates x 512
    for rule in ("series", "clusters", "analysis", "representatives", "stability", "evolution"):
        assert job_resources(rule, large)["mem_mb"] < 3 * 1024 * SAFETY, rule
    # the request is the estimate times the safety factor
    memory = job_needs("clusters", large).host
    assert job_resources("clusters", large)["mem_mb"] == int(np.ceil(memory * SAFETY / MB))


def test_the_plan_asks_for_every_rule(tmp_path: Path) -> None:
    """Every rule of the workflow has its resources from the plan's sizes; the baseline's D is 2 x bands."""
    import yaml

    from landtaxa.configcheck import check_config

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    check_config(config, root / "workflow" / "schemas" / "config.schema.yaml")
    plan = RunPlan.from_config(config, tmp_path)
    lines = [line for smk in (root / "workflow" / "rules").glob("*.smk") for line in smk.read_text().splitlines()]
    rules = {line.split()[1].rstrip(":") for line in lines if line.startswith("rule ")}
    rules |= {line.split()[4] for line in lines if line.startswith("use rule ")}
    assert {"embed_baseline", "clusters_train", "series_train", "map_k"} <= rules
    for rule in sorted(rules):
        req = plan.resources(rule, {"model": "geo", "k": "7", "date": plan.dates[0], "refined": "refined"})
        assert set(req) == {"mem_mb", "runtime", "disk_mb", "gpu_mem_mb"}, rule
        assert min(req["mem_mb"], req["runtime"], req["disk_mb"]) > 0 and req["gpu_mem_mb"] == 0, rule
    assert plan.sizes("spectral").z_dim == 8 and plan.sizes("geo").z_dim == 512
    assert plan.resources("embed", {"model": "geo"}, attempt=2)["mem_mb"] == 2 * plan.resources(
        "embed", {"model": "geo"})["mem_mb"]


PAPER = Sizes(n_tiles=48_400, n_dates=20, z_dim=512, n_bands=4, tile_size=100, width=22_000, height=22_000, k=9)
COUNTRY = Sizes(n_tiles=1_000_000, n_dates=50, z_dim=512, n_bands=4, tile_size=100, width=100_000, height=100_000,
                k=9)


@pytest.mark.parametrize(("sizes", "hours"), [(PAPER, 24), (COUNTRY, 48)], ids=["paper", "country"])
def test_every_job_fits_a_cluster_at_scale(sizes: Sizes, hours: float) -> None:
    """The paper's setting (48,400 tiles of 100 px, 20 dates) and a country (1,000,000 tiles, 50 dates), with the
    defaults, submitted to a cluster (the GPU rules on a GPU): every job asks at most 16 GB of host memory, and
    its time, with the safety factor but before any cap at compute.max_hours, is at most 24 h (48 h)."""
    for rule in sorted(RULES):
        compute = Compute(gpu=rule in gpu_rules(), threads=RULES[rule].threads)
        baseline = rule in ("embed_baseline", "untrained")  # the spectral baseline: 2 x bands features
        s = Sizes(**{**sizes.__dict__, "z_dim": 8}) if baseline else sizes
        encoder = "spectral" if baseline else "tilenet"
        req = job_resources(rule, s, encoder=encoder, compute=compute)
        assert req["mem_mb"] <= 16_000, (rule, req)
        assert job_needs(rule, s, encoder=encoder, compute=compute).seconds * TIME_SAFETY <= hours * 3600, (rule, req)


def test_gpu_jobs_keep_their_activations_on_the_gpu() -> None:
    """On a GPU, mem_mb is host memory only: the encoder's activations and the optimiser's state count apart."""
    from dataclasses import replace

    from landtaxa.learning import encoders

    heavy = replace(encoders.ENCODERS["tilenet"], name="heavy",
                    costs=replace(encoders.encoder_costs("tilenet"), infer_bytes_px=40_000, train_bytes_px=160_000))
    encoders.register_encoder(heavy)
    try:
        gpu, cpu = Compute(gpu=True), Compute(threads=2)
        for rule in ("embed", "train"):
            light, big = (job_needs(rule, PAPER, encoder=e, compute=gpu) for e in ("tilenet", "heavy"))
            assert light.host == big.host and big.gpu > light.gpu > 0, rule
            on_cpu = job_needs(rule, PAPER, encoder="heavy", compute=cpu)
            assert on_cpu.gpu == 0 and on_cpu.host > big.host - 3 * 2**30, rule  # the activations back on the host
        assert job_needs("embed", PAPER, compute=gpu).seconds < job_needs("embed", PAPER, compute=cpu).seconds / 10
    finally:
        del encoders.ENCODERS["heavy"]


def test_no_request_beyond_the_cluster_s_longest_run() -> None:
    slow = Compute(threads=1, cpu_gflops=1, max_hours=2)
    assert job_needs("train", COUNTRY, compute=slow).seconds < 8 * 3600 + 1  # the training fitted to its budget
    for rule in ("train", "embed", "stability", "clusters", "align"):
        for attempt in (1, 2):
            assert job_resources(rule, COUNTRY, compute=slow, attempt=attempt)["runtime"] <= 120, rule


def test_alignment_holds_a_window_whatever_the_region_s_width(tmp_path: Path) -> None:
    """One date aligned on regions 2,048 and 16,384 px wide (512 high), GDAL's cache (the other bound, 256 MB by
    default) at 16 MB: the peak stays put, below the estimate, which does not grow with the width beyond a few
    bytes per tile."""
    import rasterio

    peaks, estimates = [], []
    for width in (2048, 16_384):
        folder = tmp_path / str(width)
        folder.mkdir()
        grid = Grid(crs="EPSG:32630", transform=(10.0, 0.0, 400000.0, 0.0, -10.0, 4500000.0), width=width,
                    height=512, tile_size=16, bands=[1, 2], dtype="uint16", scale_min=[0.0, 0.0],
                    scale_max=[1000.0, 1000.0])
        grid.save(folder / "grid.json")
        with rasterio.open(folder / "in.tif", "w", driver="GTiff", width=width, height=512, count=2, dtype="uint16",
                           crs=grid.crs, transform=grid.affine, tiled=True, compress="deflate") as dst:
            dst.write(np.random.default_rng(0).integers(1, 1000, (2, 512, width), dtype=np.uint16))
        peaks.append(peak_mb(["align", "--grid", str(folder / "grid.json"), "--images", str(folder / "in.tif"),
                              "--out", str(folder / "a.tif"), "--valid", str(folder / "v.npz"),
                              "--params", '{"window_px": 512, "gdal_cache_mb": 16}'], folder))
        sizes = Sizes(n_tiles=grid.n_tiles, n_dates=1, z_dim=512, n_bands=2, tile_size=16, width=width, height=512)
        params = params_of("align", {"window_px": 512, "gdal_cache_mb": 16})
        estimates.append(job_needs("align", sizes, params).host / MB)
    print({"peaks": peaks, "estimates": estimates})
    assert peaks[1] < 1.3 * peaks[0] and all(p < e for p, e in zip(peaks, estimates, strict=True))
    assert estimates[1] - estimates[0] < 1  # MB: the tiles' valid fractions only


@pytest.mark.parametrize(("rule", "setting", "moves"), [
    ("clusters", {"cluster": {"n_init": 40}}, "seconds"),  # the schema's 20 restarts, not a literal 5
    ("refine", {"refine": {"epochs": 20}}, "seconds"),  # the schema's 10 epochs, not a literal 3
    ("train", {"train": {"triplets": 50_000}}, "seconds"),  # the per-tile-and-date budget, not 2000
    ("embed", {"embed": {"batch_size": 4096}}, "host"),
    ("align", {"window_px": 4096}, "host"),
    ("train", {"train": {"cache_mb": 64}}, "host"),
])
def test_estimates_read_the_step_s_own_settings(rule: str, setting: dict, moves: str) -> None:
    """Each estimate reads the step's parameter object: the schema's defaults unless the config says otherwise,
    and a setting it reads moves it (no literal default of its own to drift from the schema's)."""
    compute = Compute(gpu=rule in gpu_rules())  # the trainings on a GPU: within their time budget
    default = job_needs(rule, PAPER, compute=compute)
    assert default == job_needs(rule, PAPER, params_of(rule), compute=compute)
    changed = job_needs(rule, PAPER, params_of(rule, setting), compute=compute)
    assert getattr(changed, moves) != getattr(default, moves), (rule, setting)
