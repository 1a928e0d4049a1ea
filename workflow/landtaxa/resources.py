"""What each job asks the scheduler for: host memory, GPU memory, run time and disk, from the run's sizes.

Every rule's ``mem_mb``, ``runtime`` (minutes) and ``disk_mb`` come from :func:`job_resources`, through
:meth:`landtaxa.plan.RunPlan.resources`, so a SLURM job asks for what its data need. Each rule declares its
needs in ONE place, a function registered here with :func:`needs`::

    @needs("consensus", step="consensus")           # the rule(s), and the step whose parameters it reads
    def _consensus(job: Job) -> Needs:
        s, p = job.sizes, job.params                # the run's sizes; the step's parameter object (params.py)
        return Needs(host=BASE["sklearn"] + s.n_tiles * p.members * 8, seconds=30 + s.n_tiles / 1e5, disk=MB)

A rule without a registered function has no estimate, and the plan says so when it is asked for one.
Memory is a measured base (the interpreter and the libraries the step imports) plus the bytes the step
holds at its peak, computed from the sizes (:class:`Sizes`) and the step's parameters as the step's code
holds them; the request is that estimate times :data:`SAFETY`. ``mem_mb`` is host memory only: a job on
a GPU (``gpu=True`` in its :func:`needs`, when the plan says the GPU rules get one: :class:`Compute`)
keeps its activations, weights and optimiser state there, estimated apart (:attr:`Needs.gpu`). Run times
are the step's passes over its data at deliberately low throughputs (:data:`READ_BPS`, :data:`FLOPS`),
the encoder's FLOPs at the GPU's or the CPU's rate (:mod:`landtaxa.learning.budget`), times
:data:`TIME_SAFETY`, never beyond the cluster's longest run time (``compute.max_hours``); disk is the
step's outputs. The rules multiply memory and time by the attempt, so a retry asks for more.

Steps that walk the region (alignment, embedding, the truth) hold a window
(:func:`landtaxa.inputs.grid.windows`), so their memory does not grow with the region's width or height.

``tests/test_resources.py`` runs the steps on synthetic data at several sizes and checks that each
estimate, before the safety factor, is above the peak RSS the step reached.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from landtaxa.clustering.seeding import GRAM_BLOCK_BYTES
from landtaxa.clustering.series import BLOCK_BYTES, MEMORY_BYTES, SEED_BYTES, SEED_ROWS
from landtaxa.inputs.grid import window_side
from landtaxa.learning.budget import (
    device_flops,
    embedding_seconds,
    fit_training,
    inference_batch,
    triplet_tiles_bytes,
)
from landtaxa.learning.cube import CHUNK_BYTES, chunk_tiles
from landtaxa.learning.encoders import EncoderCosts, encoder_costs, encoder_spec
from landtaxa.learning.triplets import triplet_budget
from landtaxa.params import STEP_PARAMS, ComputeParams, StepParams, schema_defaults
from landtaxa.products.page import FIGURE_PX, THUMB_PIXELS, page_bytes

MB = 1 << 20
SAFETY = 1.5  # requested memory = estimate x SAFETY (x the attempt)
TIME_SAFETY = 3.0  # requested time = estimate x TIME_SAFETY (x the attempt), at most compute.max_hours
MIN_RUNTIME = 10  # minutes
READ_BPS = 100e6  # bytes/s read from the embedding store (a cold network disk; page cache is far faster)
WRITE_BPS = 50e6  # bytes/s of rasters and tables written
FLOPS = 2e9  # floating-point operations per second and thread in numpy

# Resident memory of a step's process before it touches any data, by what it imports (measured on
# Linux x86-64, Python 3.11: numpy, scikit-learn, rasterio, matplotlib, torch).
BASE = {"numpy": 90 * MB, "sklearn": 180 * MB, "report": 290 * MB, "torch": 420 * MB}
# What a process that uses CUDA holds on the host besides: the CUDA runtime, cuDNN and cuBLAS mapped and
# initialised (not measured here, no GPU; reported at 1-3 GB for PyTorch processes), and on the GPU the context.
CUDA_HOST = 2560 * MB
CUDA_CONTEXT = 600 * MB
BF16 = 0.5  # activations under bf16 autocast, as a share of the float32 ones (the ACTIVATIONS are float32's)


@dataclass(frozen=True)
class Sizes:
    """What sets a job's needs (built by :meth:`landtaxa.plan.RunPlan.sizes`)."""

    n_tiles: int  # tiles of the grid (an upper bound on the series' N)
    n_dates: int  # dates of the run (of the series the job reads)
    z_dim: int  # embedding size D of the job's model
    n_bands: int
    tile_size: int  # px
    width: int  # px of the region
    height: int
    itemsize: int = 2  # bytes per pixel and band of the images
    store_itemsize: int = 4  # bytes per embedding value on disk (embed.dtype)
    k: int = 10  # the job's K (the largest of n_clusters when it has none)
    members: int = 1  # the members a consensus job combines, or an embedding job embeds with (one at a time)

    @property
    def n_cols(self) -> int:
        return max(1, math.ceil(self.width / self.tile_size))

    @property
    def features(self) -> int:
        return self.n_dates * self.z_dim

    def window(self, window_px: int) -> int:
        """Side in px of the windows the region is walked in (:func:`landtaxa.inputs.grid.windows`), at most the
        region's."""
        return min(window_side(self.tile_size, window_px), max(self.width, self.height))


@dataclass(frozen=True)
class Compute:
    """Where a job runs: on a GPU or the CPU with ``threads`` threads, at which throughputs; the longest request."""

    gpu: bool = False
    threads: int = 1
    gpu_tflops: float = 25.0
    cpu_gflops: float = 10.0
    max_hours: float | None = None

    @classmethod
    def of(cls, params: ComputeParams, gpu: bool = False, threads: int = 1) -> Compute:
        return cls(gpu, threads, params.gpu_tflops, params.cpu_gflops, params.max_hours)

    @property
    def flops(self) -> float:
        return device_flops(self.gpu, self.threads, self.gpu_tflops, self.cpu_gflops)


@dataclass(frozen=True)
class Needs:
    """One job's needs before any safety factor: bytes of host memory at its peak, seconds, bytes written, bytes of
    GPU memory (a job on a GPU), and a note (e.g. how the training was fitted to its time budget)."""

    host: int
    seconds: float
    disk: int
    gpu: int = 0
    note: str = ""


@dataclass(frozen=True)
class Job:
    """What a rule's estimate is given: the run's sizes, its step's parameter object, its encoder and machine."""

    sizes: Sizes
    params: Any = None
    encoder: str = "tilenet"
    compute: Compute = field(default_factory=Compute)

    @property
    def costs(self) -> EncoderCosts:
        """The encoder's costs, as its registry entry declares them or measured (never another encoder's)."""
        return encoder_costs(self.encoder)


@dataclass(frozen=True)
class RuleNeeds:
    estimate: Callable[[Job], Needs]
    step: str | None  # the step whose parameter object the estimate reads (STEP_PARAMS), None: no settings
    gpu: bool  # the rule asks for a GPU (resources: gpu=1)
    threads: int  # the threads the rule runs with


RULES: dict[str, RuleNeeds] = {}


def needs(*rules: str, step: str | None = None, gpu: bool = False, threads: int = 1) -> Callable:
    """Register the estimate of ``rules`` (a decorator; see the module's docstring). ``step`` names the step whose
    parameters the estimate reads (default: the first rule's, when it is a step with settings); ``gpu``: the rules
    ask for a GPU; ``threads``: the threads they run with (the rules take them from here)."""

    def register(fn: Callable[[Job], Needs]) -> Callable[[Job], Needs]:
        for rule in rules:
            RULES[rule] = RuleNeeds(fn, step if step is not None else (rules[0] if rules[0] in STEP_PARAMS else None),
                                    gpu, threads)
        return fn

    return register


def rule_params(rule: str, config: dict | None = None) -> StepParams | None:
    """The parameter object a rule's estimate reads, from ``config`` (default: the schema's defaults)."""
    step = RULES[rule].step
    return None if step is None else STEP_PARAMS[step].from_config(config or schema_defaults())


def job_needs(rule: str, s: Sizes, params: Any = None, encoder: str = "tilenet",
              compute: Compute | None = None) -> Needs:
    """The needs of one job of ``rule``, before any safety factor; ``params`` default to the schema's."""
    if rule not in RULES:
        raise KeyError(f"no resource estimate for rule {rule!r}: declare one in landtaxa.resources with @needs")
    entry = RULES[rule]
    if params is None:
        params = rule_params(rule)
    compute = compute or Compute(threads=entry.threads)
    return entry.estimate(Job(s, params, encoder, compute))


def requests(n: Needs, compute: Compute | None = None, attempt: int = 1) -> dict[str, int]:
    """``mem_mb`` (host), ``runtime`` (minutes, at most ``compute.max_hours``), ``disk_mb`` and ``gpu_mem_mb`` to
    request for needs ``n``, at the ``attempt``."""
    runtime = max(MIN_RUNTIME, int(math.ceil(n.seconds * TIME_SAFETY / 60))) * attempt
    if compute is not None and compute.max_hours:
        runtime = min(runtime, int(compute.max_hours * 60))
    return {"mem_mb": int(math.ceil(n.host * SAFETY / MB)) * attempt, "runtime": runtime,
            "disk_mb": int(math.ceil(n.disk * SAFETY / MB)) + 100, "gpu_mem_mb": int(math.ceil(n.gpu * SAFETY / MB))}


def job_resources(rule: str, s: Sizes, params: Any = None, encoder: str = "tilenet", compute: Compute | None = None,
                  attempt: int = 1) -> dict[str, int]:
    """The requests (:func:`requests`) of one job of ``rule``."""
    return requests(job_needs(rule, s, params, encoder, compute), compute, attempt)


def rule_threads(rule: str) -> int:
    return RULES[rule].threads


def gpu_rules() -> set[str]:
    return {rule for rule, entry in RULES.items() if entry.gpu}


# --------------------------------------------------------------------------- what several steps hold


def _series_reading(s: Sizes) -> tuple[int, int]:
    """Bytes of the blocks a step reading the series holds (three in flight: one read ahead), and of
    its index (tile ids, validity, source dates) in memory."""

    per_tile = s.features * 4
    block = max(BLOCK_BYTES, per_tile) + s.n_dates * CHUNK_BYTES
    index = s.n_tiles * (8 * 3 + s.n_dates * 4)
    return 3 * block + 4 * 1024 * per_tile, index


def _seeding(s: Sizes) -> int:
    rows = min(s.n_tiles, max(s.k, min(SEED_ROWS, SEED_BYTES // (4 * s.features))))
    # the sample and Lloyd's blocks on it; k-means++'s float64 Gram matrix or copy of the sample (at most twice
    # the sample: clustering.seeding) and the block it is built from
    return 3 * rows * s.features * 4 + 8 * rows * min(rows, s.features) + GRAM_BLOCK_BYTES + 20 * MB


def _clustering(s: Sizes, p) -> int:
    blocks, index = _series_reading(s)
    if p.method == "minibatch":
        whole = s.n_tiles * s.features * 4
        extra = 3 * whole if whole <= MEMORY_BYTES else 2 * p.batch_size * s.features * 4
    else:
        extra = 0
    # + every tile's distances to the centroids (the run's and the renumbered copy): n x K float32 twice
    return blocks + index + _seeding(s) + extra + s.n_tiles * 8 * 6 + 2 * s.k * s.features * 8 + s.n_tiles * s.k * 8


def _passes(s: Sizes, p, restarts: int = 1) -> float:
    """Seconds of the clustering's passes over the series (Lloyd's iterations, the final assignment)."""

    iters = min(p.max_iter, 100)
    if s.n_tiles <= SEED_ROWS:
        full = iters * p.n_init + 3
    else:  # the best restart from the sample, on every tile: with cluster.stop_moved it took 2-18 passes (traced)
        polish = min(iters, 40) if p.stop_moved > 0 else iters
        full = polish + 3
        if s.n_tiles > p.sample_rows:  # converged on samples (4/3 of the largest at most), then capped
            full = (min(p.full_passes, polish) if p.full_passes else polish) + 3 \
                + polish * 4 / 3 * p.sample_rows / s.n_tiles
    per_pass = s.n_tiles * s.features * (s.store_itemsize / READ_BPS + (2 * s.k + 8) / FLOPS)
    on_sample = p.n_init * iters * min(s.n_tiles, SEED_ROWS) * s.features * (2 * s.k + 8) / FLOPS
    return restarts * (full * per_pass + on_sample)


def _silhouette(s: Sizes) -> tuple[int, float]:
    n = min(s.n_tiles, 10_000)
    memory = n * s.features * (4 + 8) + 2 * 64 * MB + s.n_tiles * 40
    return memory, n * n * s.features * 2 / (4 * FLOPS)


def _kinds_table(s: Sizes) -> int:
    """Reading the evolution's tiles x dates table (landtaxa.products.evolution.read_kinds): the (N, T) kinds (int16),
    their uses a date at a time, and one row group of 65,536 tiles."""
    return s.n_tiles * s.n_dates * 2 + s.n_tiles * 16 + min(s.n_tiles, 65_536) * s.n_dates * 200


def _map_picture(s: Sizes) -> int:
    return s.n_tiles * 40 + 30 * MB


def _window_pixels(s: Sizes, window_px: int) -> int:
    return s.window(window_px) ** 2


# --------------------------------------------------------------------------- the encoder's steps


@needs("embed_baseline", step="embed_baseline")
def _embed_baseline(job: Job) -> Needs:
    return _embed(job, BASE["numpy"])  # band statistics in numpy: no torch in the job


@needs("embed", step="embed", gpu=True)
def _embed(job: Job, base: int = BASE["torch"]) -> Needs:
    s, p, c, costs = job.sizes, job.params, job.compute, job.costs
    px = s.tile_size * s.tile_size
    batch = p.batch_size or inference_batch(c.gpu, encoder_spec(job.encoder).cpu_batch_size, s.tile_size)
    side = s.window(p.window_px)
    window = side * side * s.n_bands
    tiles_per_window = (side // s.tile_size) ** 2
    # the windows in flight (read ahead twice, the one being cut, the batch gathered across windows): raw, scaled,
    # cut into tiles and gap-filled
    gathered = max(batch, tiles_per_window) + tiles_per_window
    pixels = 3 * window * (s.itemsize + 12) + gathered * px * s.n_bands * 4 * 2
    rows, _ = chunk_tiles(math.ceil(s.height / s.tile_size), s.n_cols, s.z_dim * s.store_itemsize)
    open_chunks = (math.ceil(side / s.tile_size / rows) + 1) * rows * s.n_cols * s.z_dim * 4
    host = (base + p.gdal_cache_mb * MB + pixels + open_chunks + s.n_tiles * 16 + 60 * MB
            + costs.parameters * 4)
    gpu = 0
    if c.gpu:
        host += CUDA_HOST + batch * px * s.n_bands * 4  # the pinned copy of a batch
        gpu = CUDA_CONTEXT + costs.parameters * 4 + int(batch * px * costs.infer_bytes_px * BF16)
    else:
        host += int(batch * px * costs.infer_bytes_px)
    seconds = (embedding_seconds(costs, s.tile_size, s.n_bands, s.n_tiles, c.flops)
               + s.n_tiles * s.z_dim * s.store_itemsize / WRITE_BPS)
    # a job embeds with each member of its model in turn (one at a time in memory), one store each
    return Needs(host, s.members * seconds, s.members * s.n_tiles * (s.z_dim * s.store_itemsize + 5), gpu)


@needs("train", gpu=True, threads=2)
@needs("refine", gpu=True, threads=2)
def _train(job: Job) -> Needs:
    s, p, c, costs = job.sizes, job.params, job.compute, job.costs
    px = s.tile_size * s.tile_size
    asked = triplet_budget(p.triplets, s.n_tiles, s.n_dates)
    fit = fit_training(costs, s.tile_size, s.n_bands, asked, p.epochs, p.max_hours, c.flops, p.section)
    tiles = triplet_tiles_bytes(fit.triplets, s.n_bands, s.tile_size)  # float16 triplet tiles
    cached = min(tiles, p.cache_mb * MB)  # beyond: a memory-mapped scratch file (its pages are the kernel's cache)
    batch = 3 * p.batch_size * px * s.n_bands * 4  # a batch of tiles in float32
    host = (BASE["torch"] + cached + 3 * batch + s.n_tiles * 4 * s.n_dates + p.gdal_cache_mb * MB
            + fit.triplets * 9 * 8 * 3)
    gpu = 0
    if c.gpu:  # weights, gradients and Adam's two moments on the GPU; a copy of the weights on the host
        host += CUDA_HOST + batch + 4 * costs.parameters
        gpu = CUDA_CONTEXT + 16 * costs.parameters + int(3 * p.batch_size * px * costs.train_bytes_px * BF16)
    else:
        host += 16 * costs.parameters + int(3 * p.batch_size * px * costs.train_bytes_px)
    disk = 4 * costs.parameters + (tiles - cached if tiles > cached else 0)
    return Needs(host, fit.seconds, disk, gpu, fit.note)


@needs("untrained")
def _untrained(job: Job) -> Needs:
    return Needs(BASE["torch"] + 50 * MB, 30, MB)


# --------------------------------------------------------------------------- the region's steps


@needs("align")
def _align(job: Job) -> Needs:
    s, p = job.sizes, job.params
    window = _window_pixels(s, p.window_px)
    # per window: the mosaic, what is filled, and per granule its alpha, data, masks and tests (three copies in
    # flight, measured), GDAL's block cache (gdal_cache_mb) and its warped readers' buffers (64 MB each, a granule
    # and its mask)
    memory = BASE["report"] + p.gdal_cache_mb * MB + 3 * window * s.n_bands * (s.itemsize + 8) + 128 * MB
    memory += s.n_tiles * 8
    pixels = s.width * s.height
    return Needs(memory, pixels * s.n_bands * s.itemsize * 4 / WRITE_BPS, pixels * (s.n_bands * s.itemsize + 1))


@needs("truth")
def _truth(job: Job) -> Needs:
    s, p = job.sizes, job.params
    memory = BASE["report"] + _window_pixels(s, p.window_px) * 40 + s.n_tiles * 16 + 128 * MB
    return Needs(memory, 30 + s.width * s.height / 5e6, s.n_tiles * 8 + MB)


@needs("grid")
def _grid(job: Job) -> Needs:
    s = job.sizes
    return Needs(BASE["report"] + 16 * 512 * 512 * s.n_bands * 8 * 3, 60 + s.width * s.height / 1e7, 64 * 1024)


@needs("demo")
def _demo(job: Job) -> Needs:
    s, p = job.sizes, job.params
    side = p.size * (1 + p.overlap)
    granule = side**2 / p.granules**2
    images = p.size**2 * s.n_bands * 2 * s.n_dates * (1 + p.overlap) ** 2
    return Needs(BASE["report"] + int(granule * s.n_bands * 8 * 6 + side**2 * 8 * 4), 60 + images / WRITE_BPS,
                 int(images))


@needs("coverage")
def _coverage(job: Job) -> Needs:
    s = job.sizes
    return Needs(BASE["report"] + s.n_tiles * 8 * (s.n_dates + 2), 30 + s.n_tiles * s.n_dates / 1e7,
                 s.n_tiles * 2 + MB)


# --------------------------------------------------------------------------- the series and the clusterings


@needs("series", "series_train", step="series")
def _series(job: Job) -> Needs:
    # the index, and with cluster.standardise the moments: from the embedding jobs' sums less the dropped tiles'
    # rows (read in pieces of a block, a float64 copy of each), or for stores written before the sums were kept
    # every kept row: the time allows that one pass
    s = job.sizes
    n, t = s.n_tiles, s.n_dates
    standardised = job.params.standardise == "zscore"
    # the rows summed are read a piece of at most BLOCK_BYTES in float64 at a time, and a chunk of the store
    moments = min(BLOCK_BYTES, n * s.z_dim * 8) + CHUNK_BYTES if standardised else 0
    return Needs(BASE["numpy"] + n * (t * 12 + 40) + min(n, 65_536) * t * 16 + moments,
                 30 + n * t / 1e7 + (n * s.features * s.store_itemsize / READ_BPS if standardised else 0),
                 n * (t * 3 + 16) + MB)


@needs("clusters", "clusters_train", step="clusters")
def _clusters(job: Job) -> Needs:
    s = job.sizes
    n = s.n_tiles
    blocks, index = _series_reading(s)
    sil_mem, sil_time = _silhouette(s)
    memory = BASE["sklearn"] + max(_clustering(s, job.params), blocks + index + sil_mem) + n * 48
    return Needs(memory, _passes(s, job.params) + sil_time + n * s.features * s.store_itemsize / READ_BPS,
                 n * 16 + n * s.k * 4 + s.k * s.features * 4 + MB)


@needs("consensus", step="clusters")
def _consensus(job: Job) -> Needs:
    # K-means on the members' one-hot labels, (N, members x K) float32 built block by block from their (N,
    # members) labels: the labels, three blocks, the seeding sample and the distances; then one pass over the
    # series for the centroids and one for every tile's distances, and the silhouettes
    s, p = job.sizes, job.params
    n, f = s.n_tiles, s.features
    blocks, index = _series_reading(s)
    onehot = dataclasses.replace(s, n_dates=s.members, z_dim=s.k, store_itemsize=0)
    labels = n * s.members * 8 * 2
    sil_mem, sil_time = _silhouette(s)
    memory = BASE["sklearn"] + labels + max(_clustering(onehot, p), blocks + index + sil_mem) + n * s.k * 8 + n * 48
    seconds = _passes(onehot, p) + 2 * n * f * (s.store_itemsize / READ_BPS + 2 * s.k / FLOPS) + sil_time
    return Needs(memory, seconds, n * 16 + n * s.k * 4 + s.k * f * 4 + n * 8 + MB)


@needs("confidence")
def _confidence(job: Job) -> Needs:
    n = job.sizes.n_tiles
    return Needs(BASE["report"] + n * 24 + 30 * MB, 30 + n / 1e6, n + MB)


@needs("stability")
def _stability(job: Job) -> Needs:
    s, p = job.sizes, job.params
    # the restarts run one after the other and free their blocks; measured at 48,400 tiles x 20 dates (bench_run),
    # their peak above the libraries was at most 0.6 of the clustering's estimate: 0.9 of it keeps a margin
    clustering = int(0.9 * _clustering(s, p))
    return Needs(BASE["report"] + clustering + s.n_tiles * 8 * (p.restarts + 3), _passes(s, p, p.restarts), MB)


@needs("metrics", "k_choice")
def _small_report(job: Job) -> Needs:
    return Needs(BASE["report"] + 50 * MB, 30, MB)


# --------------------------------------------------------------------------- the products


@needs("analysis")
def _analysis(job: Job) -> Needs:
    s, p = job.sizes, job.params
    n, f = s.n_tiles, s.features
    blocks, index = _series_reading(s)
    pca = 3 * min(n * f * 4, MEMORY_BYTES)  # the sample, its centred copy and the projection (measured)
    projections = p.projection_tiles * f * 4 * 3 + p.projection_tiles**2 * 8 * 8
    memory = BASE["report"] + blocks + index + max(pca, projections) + n * 3 * 8 * 4 + _map_picture(s)
    seconds = 5 * n * f * (s.store_itemsize / READ_BPS + 6 / FLOPS) + 120 + p.projection_tiles**2 * 50 * 50 / FLOPS
    return Needs(memory, seconds, n * 8 + 10 * MB)


@needs("representatives")
def _representatives(job: Job) -> Needs:
    s, p = job.sizes, job.params
    n, t = s.n_tiles, s.n_dates
    _, index = _series_reading(s)
    images = s.k * (p.representatives + 8) * t * s.tile_size**2 * s.n_bands * 8
    # no series read: the clustering's (n, K) float32 distances, two of their columns in float64 and their mix;
    # the figure of K x representatives rows by T dates: matplotlib draws each tile's 0.8 in cell at 100 dpi
    # through float RGBA buffers, about 88 bytes a pixel (measured: 372 MB for 30 x 24 cells)
    figure = s.k * p.representatives * t * 80 * 80 * 88
    memory = BASE["report"] + index + n * 16 + n * s.k * 4 + n * 8 * 4 + images + _map_picture(s) + figure
    return Needs(memory, n * s.k * 4 / READ_BPS + 60, 10 * MB)


@needs("evolution")
def _evolution(job: Job) -> Needs:
    s = job.sizes
    n, t = s.n_tiles, s.n_dates
    blocks, index = _series_reading(s)
    # the (N, T) nearest clusters and kinds (int16), the change flags and map (bytes), the kinds' GeoTIFF stack
    # (its copy in memory and the COG's), the Parquet table's row groups of 65,536 tiles, the lasting changes'
    # (tiles, T, K) flags by groups of as many tiles, and the figure's maps of at most FIGURE_PX on a side
    figure = t * min(n, FIGURE_PX**2) * 64
    memory = (BASE["report"] + blocks + index + n * t * 16 + min(n, 65_536) * t * (100 + 3 * s.k) + figure
              + 1024 * s.k * s.z_dim * 4 * 2 + 2 * _map_picture(s))
    seconds = n * s.features * (s.store_itemsize / READ_BPS + 4 * s.k / FLOPS) + n * t * 100 / WRITE_BPS + 30 * t + 60
    return Needs(memory, seconds, n * t * 20 + t * n * 2 + 10 * MB)


@needs("map", "map_k", "kinds")
def _map(job: Job) -> Needs:
    s = job.sizes
    n, t = s.n_tiles, s.n_dates
    _, index = _series_reading(s)
    memory = BASE["report"] + _kinds_table(s) + index + _map_picture(s)
    return Needs(memory, 60 + n * t * 100 / WRITE_BPS, n * 8 + 5 * MB)


@needs("viewer")
def _viewer(job: Job) -> Needs:
    s, p = job.sizes, job.params
    n, t = s.n_tiles, s.n_dates
    _, index = _series_reading(s)
    shown = s.k * 3 + p.viewer_tiles
    # one tile of every date read at a time, its thumbnail kept (at most THUMB_PIXELS in all): the float32 RGB
    # images, their stretched copy, the valid pixels for the median (and its partition), the uint8 atlas and its
    # PNG rows; the maps of every date (one byte per tile), their compressed copy, and the page
    thumbs = min(THUMB_PIXELS, shown * t * min(s.tile_size, 64) ** 2) * 3 * (4 * 4 + 4)
    page = page_bytes(n, t, shown, s.tile_size)
    memory = BASE["report"] + _kinds_table(s) + index + _map_picture(s) + thumbs + n * (t + 1) * 3 + 3 * page
    return Needs(memory, 60 + n * t * 100 / WRITE_BPS + shown * t * 0.01, page)


@needs("tiles")
def _tiles(job: Job) -> Needs:
    n = job.sizes.n_tiles
    return Needs(BASE["report"] + n * 400 * 3, 60 + n * 400 / WRITE_BPS, n * 200)
