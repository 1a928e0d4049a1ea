"""The run plan: everything the workflow decides from the config before any job runs.

:meth:`RunPlan.from_config` reads the validated config once: the image inventory (a sheet,
a folder, or the built-in demo), the dates, the dates the grid and the encoders learn from,
the models and the model each refined one starts from, the K to cluster at, the region the
grid will cover, and the outputs of a whole run. It checks what can be checked from the
headers (every problem names the file or config key) and the disk space the outputs need,
so a bad run stops before its first job. The Snakemake rules only ask it questions
(``workflow/rules/common.smk``); it never imports snakemake, so it is unit-tested alone.

Training dates: with ``train.dates`` null, the dates present when the grid is first built
are recorded in ``results/grid.json`` and used from then on, so new dates added to the
archive change neither the grid nor the models (only the new date is aligned and embedded,
then the cheap steps run again). ``train.dates: all`` retrains everything on every run's
dates; a list of dates fixes them explicitly. The built-in demo's dates are those of its config.

The demo's encoder is resolved into the plan's copy of the config (:meth:`RunPlan._resolved`), from
which every step's parameters come.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from landtaxa import params as P
from landtaxa.checks import (
    RunCheckError,
    RunShape,
    bytes_needed,
    check_disk,
    check_k,
    check_tile_size,
    check_truth_overlap,
    encoder_bytes,
    image_region,
)
from landtaxa.inputs.aoi import aoi_bounds, check_overlap
from landtaxa.inputs.datasets import InventoryError, exists, is_gdal_path, local_file
from landtaxa.inputs.demo.spec import DemoSpec, demo_inventory, spec_of, truth_path
from landtaxa.inputs.grid import Region
from landtaxa.inputs.inventory import check_images, read_inventory, validate_inventory
from landtaxa.inputs.search import SAVED, also_logged_to, is_search
from landtaxa.inputs.search import search as search_api
from landtaxa.inputs.stac import is_stac, read_items, vrt_name, write_vrts
from landtaxa.inputs.vrt import parse_band_values, wrap_raster
from landtaxa.learning.encoders import encoder_spec
from landtaxa.learning.triplets import triplet_budget
from landtaxa.resources import (
    RULES,
    Compute,
    Needs,
    Sizes,
    gpu_rules,
    job_needs,
    requests,
    rule_params,
    rule_threads,
)
from landtaxa.runtime import gdal_http_options, literal_secrets, resolve_headers, use_signer
from landtaxa.storage import get_logger

STEP_PARAMS = P.STEP_PARAMS
log = get_logger()
SEARCH_LOG = "logs/stac_search.log"  # the searches of a STAC API given as images, relative to the run's folder
LONG_HOURS = 3  # a run whose training and embedding on this machine's CPU take longer is told what to change
BASELINE = "spectral"  # the baseline every model is compared with: per-date band means and standard deviations
CLASSIC = "means"  # the classic baseline: per-date band means alone (the main map when the members disagree)
BASELINES = (BASELINE, CLASSIC)  # the models that need no training, run beside the method's models
CONSENSUS = "consensus"  # the members' taxonomies combined into one (members.count > 1)
MEMBER = "_m"  # member i's models: geo_m1, refined_m1, ... (member 0's are geo, refined themselves)
MEMBER_SEED_STEP = 1000  # member i trains, refines and clusters from seed + 1000 i


def member_count(setting: dict, n_tiles: int) -> int:
    """The number of members: ``members.count``, or clip(ceil(members.tiles / tiles), members.min, members.max)."""
    if setting["count"] is not None:
        return int(setting["count"])
    return int(min(setting["max"], max(setting["min"], -(-setting["tiles"] // max(n_tiles, 1)))))


class PlanError(ValueError):
    """The config, the images or the machine cannot carry the run."""


def http_headers(config: dict) -> dict[str, str]:
    """The config's ``http_headers`` with their ``env:NAME`` values read from this process's environment."""
    try:
        return resolve_headers(config.get("http_headers"))
    except ValueError as err:
        raise RunCheckError(str(err)) from err


@contextlib.contextmanager
def remote_reads(config: dict) -> Iterator[None]:
    """GDAL's HTTP retries, time-outs and headers (config keys ``http``, ``http_headers``) and the signing hook
    (``sign_hrefs``) for the header reads of the plan, this process only (the jobs set their own:
    :func:`landtaxa.runtime.apply_http`)."""
    import rasterio

    for name in literal_secrets(config.get("http_headers")):
        log.warning("config key http_headers.%s: given as a literal value, which Snakemake records with the config; "
                    "give a credential as env:NAME (read from the environment) instead", name)
    try:
        use_signer(config.get("sign_hrefs"))
    except ValueError as err:
        raise RunCheckError(str(err)) from err
    with rasterio.Env(**gdal_http_options(config.get("http"), http_headers(config))):
        yield


def saved_search(config: dict, sources: Path, search: bool) -> Path:
    """The STAC API search of ``images``, saved under ``sources``: searched again (``search``), or as the
    planning process left it."""
    images, path = config["images"], sources / SAVED
    if not config["aoi"]:
        raise RunCheckError(f"config key images: a search of the STAC API at {images['stac_api']} needs an area of "
                            "interest, whose bounds are the search's bbox: set config key aoi to a polygon file "
                            "(GeoJSON, GeoPackage, Shapefile)")
    if not exists(config["aoi"]):
        raise RunCheckError(f"{config['aoi']}: area of interest not found (config key aoi)")
    if search:
        search_api(images, config["aoi"], path, http_headers(config), config.get("http"))
    elif not path.is_file():
        raise RunCheckError(f"{path}: the saved STAC search is missing; run snakemake where it can search "
                            f"{images['stac_api']}, or give the saved ItemCollection as images")
    return path


def band_numbers(bands: list | None) -> list[int] | None:
    """The config's bands when they are 1-based numbers; None when they name STAC assets (their VRTs
    hold exactly those bands, in order) or are not given (all)."""
    return bands if bands and all(isinstance(b, int) for b in bands) else None


@dataclass
class RunPlan:
    config: dict
    inventory: pd.DataFrame  # date, granule, path, mask; sorted by date, inventory order within a date
    region: Region
    train_dates: list[str]
    retrain: bool  # train.dates: all (the models follow every run's dates)
    truth: str | None
    results: str = "results"
    demo: DemoSpec | None = None
    cluster: bool = False  # the jobs are submitted to a cluster (its GPU rules' jobs get a GPU)
    cores: int | None = None  # the cores of a local run (its jobs' threads are capped there)
    models: list[str] = field(init=False)  # every model with maps and analysis: baselines, chain, consensus
    parents: dict[str, str] = field(init=False)  # refined model -> the model it is refined from
    members: dict[str, list[str]] = field(init=False)  # model of the chain -> its members' models (itself first)

    def __post_init__(self) -> None:
        n = self.config["refine"]["iterations"]
        refined = [f"refined{i}" for i in range(1, n)] + (["refined"] if n > 0 else [])
        chain = ["geo", *refined]
        count = member_count(self.config["members"], self.region.n_tiles(self.config["tile_size"]))
        self.members = {m: [m] + [f"{m}{MEMBER}{i}" for i in range(1, count)] for m in chain}
        self.parents = {}
        for child, parent in zip(refined, chain, strict=False):
            self.parents.update(dict(zip(self.members[child], self.members[parent], strict=True)))
        self.models = [*BASELINES, *chain] + ([CONSENSUS] if count > 1 else [])

    # ------------------------------------------------------------------ building

    @classmethod
    def from_config(cls, config: dict, workdir: str | os.PathLike = ".", results: str = "results",
                    search: bool = True, cluster: bool = False, cores: int | None = None) -> RunPlan:
        """The plan of a run of ``config`` (validated, defaults filled) in ``workdir``; PlanError if it cannot run.

        ``search``: ask the STAC API of ``images`` again (where the workflow plans); False reads the search
        saved by the planning process (inside a job that plans again, e.g. on a cluster node).
        ``cluster``: the jobs go to a cluster (Snakemake's executor is not the local one); ``cores``: a local run's."""
        try:
            plan = cls._build(config, Path(workdir), results, search)
        except (InventoryError, RunCheckError) as err:
            raise PlanError(str(err)) from err
        plan.cluster, plan.cores = cluster, cores
        return plan

    @classmethod
    def _build(cls, config: dict, workdir: Path, results: str, search: bool = True) -> RunPlan:
        demo = None
        if config["images"] == "demo":
            demo = spec_of(P.DemoParams.from_config(config))
            inventory = pd.DataFrame([{"date": d, "granule": g, "path": str(p), "mask": ""}
                                      for d, g, p in demo_inventory(demo, f"{results}/demo")])
            region = demo.region()
        else:
            with remote_reads(config):
                inventory = cls._images(config, workdir / results / "sources", search, workdir)
                numbered = band_numbers(config["bands"])
                check_images(inventory, numbered, config["masks"]["band"])
                region = image_region(inventory["path"].tolist(), config["tile_size"], config["crs"],
                                      config["resolution"], numbered)
        if config["aoi"]:
            region = cls._within_aoi(config["aoi"], region)
        dates = sorted(inventory["date"].unique())
        # the demo's dates are its config's: a changed demo is a new region, not new dates
        recorded = None if demo else workdir / results / "grid.json"
        train_dates, retrain = cls._training_dates(config["train"]["dates"], dates, recorded)
        truth = config["truth"]
        if truth == "demo":  # the demo's own ground truth; none for other images
            truth = str(truth_path(f"{results}/demo")) if demo else None
        elif truth and not exists(truth if os.path.isabs(truth) or is_gdal_path(truth) else workdir / truth):
            raise RunCheckError(f"{truth}: truth raster not found (config key truth)")
        config = cls._resolved(config, demo is not None)
        if not encoder_spec(config["encoder"]["name"]).trains:
            raise RunCheckError(f"config key encoder.name: {config['encoder']['name']} learns nothing from triplets; "
                                "choose an encoder that trains (the spectral baseline runs in every run anyway)")
        plan = cls(config, inventory, region, train_dates, retrain, truth, results, demo)
        check_tile_size(region, config["tile_size"])
        check_k(plan.k_list, region.n_tiles(config["tile_size"]), f"the region's grid ({config['images']})")
        if truth and not demo:
            check_truth_overlap(truth, region)
        return plan

    @staticmethod
    def _resolved(config: dict, is_demo: bool) -> dict:
        """The config with the settings that depend on the data resolved (a copy; the user's stays as it is):
        the built-in demo trains ``demo.encoder`` (``encoder.name`` is for the user's images)."""
        config = copy.deepcopy(config)
        if is_demo:
            config["encoder"]["name"] = config["demo"]["encoder"]
        return config

    @staticmethod
    def _images(config: dict, sources: Path, search: bool = True, workdir: Path = Path(".")) -> pd.DataFrame:
        """The inventory of a sheet, a folder, a STAC catalog or a STAC API search (its items as VRTs under
        ``sources``, the search saved there too).

        Sheet rows with ``scale``/``offset`` are wrapped likewise in a VRT in physical units.
        """
        images, bands = config["images"], config["bands"] or []
        searched = is_search(images) and search
        with also_logged_to(workdir / SEARCH_LOG) if searched else contextlib.nullcontext():
            if is_search(images):
                images = str(saved_search(config, sources, search))
            if is_stac(images):
                if not bands or not all(isinstance(b, str) for b in bands):
                    raise RunCheckError(f"{images}: a STAC catalog needs config key bands to name its assets, e.g. "
                                        "[B04, B03, B02, B08] or [red, green, blue, nir]")
                items = read_items(images, bands, config["masks"]["asset"], config["max_cloud_cover"],
                                   headers=http_headers(config))
                return validate_inventory(write_vrts(items, sources, config["resampling"]), images)
        if any(isinstance(b, str) for b in bands):
            raise RunCheckError(f"config key bands: band names ({', '.join(map(str, bands))}) need a STAC catalog as "
                                "images; give 1-based band numbers for rasters")
        if config["masks"]["asset"]:
            raise RunCheckError("config key masks.asset: masks from assets need a STAC catalog as images; use the "
                                "sheet's mask column or masks.band")
        inventory = read_inventory(images, config["date_pattern"])
        for i, row in inventory.iterrows():
            if row.get("scale") or row.get("offset"):
                where = f"{images}, row of {row['path']}"
                vrt = sources / "scaled" / f"{row['date']}_{vrt_name(row['granule'])}"
                inventory.loc[i, "path"] = str(wrap_raster(row["path"], vrt, parse_band_values(row["scale"], where),
                                                           parse_band_values(row["offset"], where)))
        return inventory

    @staticmethod
    def _within_aoi(path: str, region: Region) -> Region:
        """The region cut to the area of interest's bounds (refused when they miss each other)."""
        if not exists(path):
            raise RunCheckError(f"{path}: area of interest not found (config key aoi)")
        check_overlap(path, region.bounds, region.crs)
        a, r = aoi_bounds(path, region.crs), region.bounds
        bounds = (max(a[0], r[0]), max(a[1], r[1]), min(a[2], r[2]), min(a[3], r[3]))
        return dataclasses.replace(region, bounds=bounds)

    @staticmethod
    def _training_dates(setting, dates: list[str], grid_json: Path | None) -> tuple[list[str], bool]:
        if setting == "all":
            return dates, True
        if setting:
            chosen, where = [str(d) for d in setting], "train.dates lists"
        elif grid_json is not None and grid_json.exists():
            chosen = json.loads(grid_json.read_text()).get("train_dates") or dates
            where = f"{grid_json} records the training dates (fixed when the grid was first built)"
        else:
            return dates, False
        unknown = sorted(set(chosen) - set(dates))
        if unknown:
            raise RunCheckError(
                f"{where} {', '.join(unknown)}, not in the inventory; put those images back, set train.dates "
                "(a list, or all), or start afresh in an empty results folder"
            )
        return sorted(chosen), False

    # ------------------------------------------------------------------ questions the rules ask

    @property
    def dates(self) -> list[str]:
        return sorted(self.inventory["date"].unique())

    @property
    def k_list(self) -> list[int]:
        k = self.config["n_clusters"]
        return list(k) if isinstance(k, list) else [k]

    @property
    def k_main(self) -> int:
        return self.k_list[0]

    @property
    def analysed_k(self) -> list[int]:
        return self.k_list if self.config["analysis"]["all_k"] else [self.k_main]

    def params(self, step: str, model: str | None = None) -> str:
        """The parameters of ``step`` (of ``model``'s job) as JSON: the config keys that step reads, and only those.

        The baselines' series are never standardised: their features are band statistics in one unit,
        and z-scoring them weakens them (demo ARI 0.73 -> 0.58), while they are meant as the bar to beat.
        Member i's models train, refine and cluster from ``seed + 1000 i``.
        """
        params = STEP_PARAMS[step].from_config(self.config)
        if step == "series" and model in BASELINES:
            params = dataclasses.replace(params, standardise="none")
        index = self.member_index(model)
        if index and hasattr(params, "seed"):
            params = dataclasses.replace(params, seed=params.seed + MEMBER_SEED_STEP * index)
        return params.to_json()

    def member_index(self, model: str | None) -> int:
        """0 for the run's own models, i for member i's (``geo_m2``: 2)."""
        for members in self.members.values():
            if model in members:
                return members.index(model)
        return 0

    def images_of(self, date: str) -> list[str]:
        return self.inventory.loc[self.inventory["date"] == date, "path"].tolist()

    @staticmethod
    def local(paths: list[str]) -> list[str]:
        """The local files behind datasets (what Snakemake can track; remote ones have none)."""
        return [f for f in map(local_file, paths) if f and f != "-"]

    def masks_of(self, date: str) -> list[str]:
        """The mask raster of each image of a date, '-' where an image has none (none at all: [])."""
        masks = [m or "-" for m in self.inventory.loc[self.inventory["date"] == date, "mask"]]
        return masks if any(m != "-" for m in masks) else []

    def grid_images(self) -> list[str]:
        """One file per granule (its earliest date): the grid does not change when dates are added."""
        return self.inventory.drop_duplicates("granule", keep="first")["path"].tolist()

    def scale_images(self, max_images: int = 16) -> list[str]:
        """Images sampled for the radiometric scaling: spread evenly over the training dates."""
        rows = self.inventory[self.inventory["date"].isin(self.train_dates)]
        if len(rows) > max_images:
            rows = rows.iloc[np.linspace(0, len(rows) - 1, max_images).round().astype(int)]
        return rows["path"].tolist()

    @property
    def baselines(self) -> tuple[str, ...]:
        return BASELINES

    @property
    def chain(self) -> list[str]:
        """The method's models in order: geo, then each refinement (member 0's)."""
        return list(self.members)

    @property
    def trained(self) -> list[str]:
        """The models whose encoder learns, every member's included."""
        return [m for members in self.members.values() for m in members]

    @property
    def geo_members(self) -> list[str]:
        return self.members["geo"]

    @property
    def member_suffixes(self) -> list[str]:
        """What each member adds to a model's name, member 0 first (""): the same for every model of the chain."""
        return [m[len("geo"):] for m in self.geo_members]

    @property
    def embedded(self) -> list[str]:
        """The models with embeddings, series and K-means clusterings of their own."""
        return [*BASELINES, *self.trained]

    @property
    def all_models(self) -> list[str]:
        return self.embedded + ([CONSENSUS] if CONSENSUS in self.models else [])

    @property
    def consensus_of(self) -> str:
        """The model whose members the consensus combines (the chain's last: refined, or geo)."""
        return self.chain[-1]

    @property
    def main_candidates(self) -> list[str]:
        """The models the run may recommend (metrics.json's ``main``): the consensus, or the classic baseline when
        its members disagree; without members the chain's last model."""
        return [CONSENSUS, CLASSIC] if CONSENSUS in self.models else [self.chain[-1]]

    def encoder_of(self, model: str) -> str:
        return model if model in BASELINES else self.config["encoder"]["name"]

    def refine_clusters(self, model: str) -> str:
        """The clustering that guides a refinement: of the training dates, unless they follow every run."""
        part = "" if self.retrain else "train/"
        return f"{self.results}/clusters/{part}{self.parents[model]}/k{self.k_main}.npz"

    def aligned(self, dates: list[str]) -> list[str]:
        return [f"{self.results}/aligned/{d}.tif" for d in dates]

    def valid(self, dates: list[str]) -> list[str]:
        return [f"{self.results}/aligned/{d}_valid.npz" for d in dates]

    @property
    def main_model(self) -> str:
        """The model the run recommends unless its members disagree (the viewer's; metrics.json says which)."""
        return self.main_candidates[0]

    def final_outputs(self) -> list[str]:
        r = self.results
        out = [f"{r}/metrics.json", f"{r}/maps/coverage.tif", f"{r}/tiles.parquet", f"{r}/viewer/index.html"]
        out += [f"{r}/models/{b}.pt" for b in BASELINES]  # no job reads them: their embeddings need no model
        if CONSENSUS in self.models:
            out.append(f"{r}/maps/{CONSENSUS}_confidence.tif")
        for model in self.models:
            out += [f"{r}/maps/{model}_clusters.tif"]
            for k in self.analysed_k:
                folder = f"{r}/analysis/{model}/k{k}"
                out += [f"{folder}/series_pca.tif", f"{folder}/representatives.csv", f"{folder}/stability.json",
                        f"{folder}/kinds.csv", f"{r}/evolution/{model}/k{k}/summary.json"]
                if k != self.k_main:
                    out.append(f"{folder}/clusters.tif")
            if len(self.k_list) > 1 and model != CONSENSUS:  # the consensus at the analysed K only: its members
                out.append(f"{r}/analysis/{model}/k_choice.csv")  # are not clustered at every K of a sweep
        return out

    # ------------------------------------------------------------------ disk

    def disk_need(self, workdir: str | os.PathLike = ".") -> int:
        """Bytes the outputs still to write need (see :func:`landtaxa.checks.output_estimates`)."""
        c, reg = self.config, self.region
        ts = c["tile_size"]
        models_missing = any(not (Path(workdir) / f"{self.results}/models/{m}.pt").exists() for m in self.models)
        tile_bytes = 3 * reg.n_bands * ts * ts * 2
        n_tiles = reg.n_tiles(ts)
        budgets = {s: triplet_budget(c[s]["triplets"], n_tiles, len(self.train_dates)) for s in ("train", "refine")}
        scratch = [n * tile_bytes for s, n in budgets.items() if n * tile_bytes > c[s]["cache_mb"] * 2**20]
        shape = RunShape(
            width=reg.width, height=reg.height, n_bands=reg.n_bands, itemsize=reg.itemsize, tile_size=ts,
            dates=self.dates, models=self.models, z_dim=max(c["encoder"]["z_dim"], 2 * reg.n_bands), ks=self.k_list,
            model_bytes=encoder_bytes(c["encoder"]["name"], reg.n_bands, c["encoder"]["z_dim"]) if models_missing
            else 0,
            scratch_bytes=max(scratch, default=0),
        )
        needed = bytes_needed(shape, workdir, self.results)
        if self.demo and not (Path(workdir) / truth_path(f"{self.results}/demo")).exists():
            needed += int(reg.width * reg.height * reg.n_bands * 2 * len(self.dates) * (1 + self.demo.overlap) ** 2)
        return needed

    def check_disk(self, workdir: str | os.PathLike = ".") -> str:
        """The line stating the space the run needs; PlanError when the disk has less (config key disk)."""
        d = self.config["disk"]
        try:
            return check_disk(self.disk_need(workdir), Path(workdir) / self.results,
                              d["margin_gb"] if d["check"] else -float("inf"))
        except RunCheckError as err:
            raise PlanError(str(err)) from err

    # ------------------------------------------------------------------ resources

    def sizes(self, model: str | None = None, k: int | None = None, dates: list[str] | None = None) -> Sizes:
        """The sizes that set a job's needs (:mod:`landtaxa.resources`): of ``model``'s embeddings (default:
        the method's), at ``k`` (default: the largest K), over ``dates`` (default: every date)."""
        c, reg = self.config, self.region
        z_dim = {BASELINE: 2 * reg.n_bands, CLASSIC: reg.n_bands}.get(model or "", c["encoder"]["z_dim"])
        return Sizes(n_tiles=reg.n_tiles(c["tile_size"]), n_dates=len(dates if dates is not None else self.dates),
                     z_dim=z_dim, n_bands=reg.n_bands, tile_size=c["tile_size"], width=reg.width, height=reg.height,
                     itemsize=reg.itemsize, store_itemsize=2 if c["embed"]["dtype"] == "float16" else 4,
                     k=k or max(self.k_list))

    @property
    def gpu(self) -> bool:
        """Whether the GPU rules' jobs run on a GPU (config key compute.gpu; auto: on a cluster, whose GPU jobs ask
        for one, or where this machine has an NVIDIA driver and the config's device is not the CPU)."""
        setting = self.config["compute"]["gpu"]
        if setting != "auto":
            return bool(setting)
        if self.cluster:
            return True
        return self.config["device"] != "cpu" and any(Path("/proc/driver/nvidia/gpus").glob("*"))

    def threads(self, rule: str) -> int:
        """The threads a rule runs with (declared with its estimate in :mod:`landtaxa.resources`)."""
        return rule_threads(rule)

    def compute(self, rule: str) -> Compute:
        """Where one job of ``rule`` runs (a GPU or the CPU, its threads) and the longest it may ask for."""
        gpu = rule in gpu_rules() and self.gpu
        threads = rule_threads(rule)
        if self.cores and not gpu:
            threads = min(threads, self.cores)
        return Compute.of(P.ComputeParams.from_config(self.config), gpu, threads)

    def job_needs(self, rule: str, wildcards=None) -> tuple[str, Needs]:
        """(the rule as estimated, the needs of one job of ``rule``) for its ``wildcards`` (model or refined, k)."""
        wc = dict(wildcards.items()) if hasattr(wildcards, "items") else dict(wildcards or {})
        model = (wc.get("model") or wc.get("family") or wc.get("refined") or wc.get("geo") or wc.get("baseline")
                 or ("geo" if rule == "train" else self.consensus_of))
        if model == CONSENSUS:  # read through the series of the model whose members it combines
            model = self.consensus_of
        dates = self.train_dates if rule in ("series_train", "clusters_train", "train", "refine") else None
        k = int(wc["k"]) if "k" in wc else (self.k_main if rule in ("map", "viewer", "tiles", "metrics") else None)
        try:
            params = rule_params(rule, self.config)
        except KeyError as err:
            raise PlanError(f"rule {rule}: {err.args[0]}") from err
        sizes = self.sizes(model, k, dates)
        if rule == "consensus":
            sizes = dataclasses.replace(sizes, members=len(self.members[self.consensus_of]))
        elif rule == "embed" and "family" in wc:  # an embedding job embeds with each member of the model in turn
            sizes = dataclasses.replace(sizes, members=len(self.members[wc["family"]]))
        return rule, job_needs(rule, sizes, params, self.encoder_of(model), self.compute(rule))

    def resources(self, rule: str, wildcards=None, attempt: int = 1) -> dict[str, int]:
        """``mem_mb`` (host), ``runtime`` (minutes, at most compute.max_hours), ``disk_mb`` and ``gpu_mem_mb`` of one
        job of ``rule`` (its ``wildcards``: model or refined, k, date), from the run's sizes; memory and time grow
        with the ``attempt``."""
        rule, needs = self.job_needs(rule, wildcards)
        return requests(needs, self.compute(rule), attempt)

    # ------------------------------------------------------------------ what the run will take

    def encoder_jobs(self) -> list[tuple[str, dict]]:
        """The jobs of the GPU rules: (rule, wildcards) of every training, refinement and embedding job."""
        jobs: list[tuple[str, dict]] = [("train", {"geo": g}) for g in self.geo_members]
        jobs += [("refine", {"refined": m}) for m in self.parents]
        jobs += [("embed", {"family": m, "date": d}) for m in self.chain for d in self.dates]
        return jobs

    def time_outlook(self) -> list[str]:
        """Lines printed when the run starts: for a run whose training and embedding go to this machine's CPU, how
        long they will take and what to change when that is more than a few hours; and, on any machine, every job
        whose estimate exceeds compute.max_hours (its request is capped there)."""
        lines = []
        train = [(r, self.job_needs(r, w)[1]) for r, w in self.encoder_jobs() if r != "embed"]
        embed = [self.job_needs(r, w)[1] for r, w in self.encoder_jobs() if r == "embed"]
        for rule, needs in train:
            if needs.note:
                lines.append(f"{rule}: {needs.note}")
        if not self.gpu:
            cores = max(1, self.cores or 1)
            training = sum(n.seconds for _, n in train)
            embedding = sum(n.seconds for n in embed) / cores  # one thread a job, cores jobs at once
            lines.append(
                f"without a GPU, training and refining will take about {_duration(training)} and embedding "
                f"{len(embed)} date x model jobs about {_duration(embedding)} on this CPU "
                f"({self.config['encoder']['name']}, {self.config['tile_size']} px tiles, at compute.cpu_gflops "
                f"{self.config['compute']['cpu_gflops']:g} GFLOP/s per thread)")
            if training + embedding > LONG_HOURS * 3600:
                lines.append(
                    "that is long: use the lighter encoder (encoder.name: tilenet-lite, about 40x fewer FLOPs), fewer "
                    "triplets (train.triplets, refine.triplets) or epochs, or a GPU (a cluster: --profile "
                    "workflow/profiles/slurm); train.max_hours and refine.max_hours cap each training")
        limit = self.config["compute"]["max_hours"]
        largest = {"model": self.main_model, "family": self.consensus_of, "k": max(self.k_list), "date": self.dates[0],
                   "refined": next(iter(self.parents), "")}
        for rule in sorted(RULES):
            if rule == "refine" and not self.parents or rule == "demo" and not self.demo:
                continue
            cases = ([{"baseline": b, "date": self.dates[0]} for b in BASELINES] if rule == "embed_baseline"
                     else [largest])  # a baseline's embedding computes band statistics, not the run's encoder
            needs = max((self.job_needs(rule, wc)[1] for wc in cases), key=lambda n: n.seconds)
            if needs.seconds > limit * 3600:
                lines.append(f"{rule}: a job is estimated at {_duration(needs.seconds)}, beyond compute.max_hours "
                             f"{limit:g}: its request is capped there and it may be cut short")
        return lines


def _duration(seconds: float) -> str:
    if seconds < 60:
        return "under a minute"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 72 * 3600 else f"{seconds / 86400:.1f} days"
