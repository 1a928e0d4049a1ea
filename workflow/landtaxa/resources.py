"""What each job asks the scheduler for: memory, run time and disk, from the sizes of the run.

Every rule's ``mem_mb``, ``runtime`` (minutes) and ``disk_mb`` come from :func:`job_resources`,
through :meth:`landtaxa.plan.RunPlan.resources`, so a SLURM job asks for what its data need
instead of a fixed 4 GB. Each memory estimate is a measured base (the interpreter and the
libraries the step imports) plus the bytes the step holds at its peak, computed from the run's
sizes (:class:`Sizes`: tiles, dates, embedding size D, bands, tile size, the region's width,
the clustering settings) as the step's code holds them; the request is that estimate times
:data:`SAFETY`. Run times are the step's passes over its data at deliberately low throughputs
(:data:`READ_BPS`, :data:`FLOPS`), times :data:`TIME_SAFETY`; disk is the step's outputs.
The rules multiply memory and time by the attempt, so a retry asks for more.

``tests/test_resources.py`` runs the steps on synthetic data at several sizes and checks that each
estimate, before the safety factor, is above the peak RSS the step reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from landtaxa.clustering.series import BLOCK_BYTES, MEMORY_BYTES, SEED_BYTES, SEED_ROWS
from landtaxa.learning.cube import CHUNK_BYTES, chunk_tiles
from landtaxa.learning.encoders import ENCODERS
from landtaxa.learning.triplets import triplet_budget

MB = 1 << 20
SAFETY = 1.5  # requested memory = estimate x SAFETY (x the attempt)
TIME_SAFETY = 3.0  # requested time = estimate x TIME_SAFETY (x the attempt)
MIN_RUNTIME = 10  # minutes
READ_BPS = 100e6  # bytes/s read from the embedding store (a cold network disk; page cache is far faster)
WRITE_BPS = 50e6  # bytes/s of rasters and tables written
FLOPS = 2e9  # floating-point operations per second and thread in numpy
TORCH_FLOPS = 5e9  # per thread, in the encoder on a CPU (a GPU is far faster)

# Resident memory of a step's process before it touches any data, by what it imports (measured on
# Linux x86-64, Python 3.11: numpy, scikit-learn, rasterio, matplotlib, torch).
BASE = {"numpy": 90 * MB, "sklearn": 180 * MB, "report": 290 * MB, "torch": 420 * MB}

# Encoder activations, bytes per input pixel and tile: at inference (the embedding's batches) and
# in training (forward and backward of a triplet batch); calibrated on the demo's 16 px tiles.
ACTIVATIONS = {"tilenet": (4_000, 16_000), "tilenet-lite": (700, 3_000), "spectral": (64, 0)}
ENCODER_GFLOP_100PX = {"tilenet": 12.0, "tilenet-lite": 0.28, "spectral": 0.001}
PARAMETERS = {"tilenet": 21_000_000, "tilenet-lite": 11_200_000, "spectral": 0}  # at z_dim 512


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
    config: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def n_cols(self) -> int:
        return max(1, math.ceil(self.width / self.tile_size))

    @property
    def features(self) -> int:
        return self.n_dates * self.z_dim


def _c(sizes: Sizes, key: str, default):
    """The config value at dotted ``key`` (the schema's default when absent)."""
    value = sizes.config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return default if value is None else value


# --------------------------------------------------------------------------- the steps' needs


def _series_reading(s: Sizes) -> tuple[int, int]:
    """Bytes of the blocks a step reading the series holds (three in flight: one read ahead), and of
    its index (tile ids, validity, source dates) in memory."""

    per_tile = s.features * 4
    block = max(BLOCK_BYTES, per_tile) + s.n_dates * CHUNK_BYTES
    index = s.n_tiles * (8 * 3 + s.n_dates * 4)
    return 3 * block + 4 * 1024 * per_tile, index


def _seeding(s: Sizes) -> int:
    rows = min(s.n_tiles, max(s.k, min(SEED_ROWS, SEED_BYTES // (4 * s.features))))
    return 3 * rows * s.features * 4 + 20 * MB  # the sample, Lloyd's blocks on it, k-means++'s batches


def _clustering(s: Sizes) -> int:
    blocks, index = _series_reading(s)
    if _c(s, "cluster.method", "kmeans") == "minibatch":
        whole = s.n_tiles * s.features * 4
        extra = 3 * whole if whole <= MEMORY_BYTES else 2 * _c(s, "cluster.batch_size", 4096) * s.features * 4
    else:
        extra = 0
    # + every tile's distances to the centroids (the run's and the renumbered copy): n x K float32 twice
    return blocks + index + _seeding(s) + extra + s.n_tiles * 8 * 6 + 2 * s.k * s.features * 8 + s.n_tiles * s.k * 8


def _passes(s: Sizes, restarts: int = 1) -> float:
    """Seconds of the clustering's passes over the series (Lloyd's iterations, the final assignment)."""

    iters = min(_c(s, "cluster.max_iter", 300), 100)
    n_init = _c(s, "cluster.n_init", 5)
    if s.n_tiles <= SEED_ROWS:
        full = iters * n_init + 3
    else:  # the best restart from the sample, on every tile: with cluster.stop_moved it took 2-18 passes (traced)
        polish = min(iters, 40) if _c(s, "cluster.stop_moved", 0.001) > 0 else iters
        largest, capped = _c(s, "cluster.sample_rows", 16384), _c(s, "cluster.full_passes", 2)
        full = polish + 3
        if s.n_tiles > largest:  # converged on samples (4/3 of the largest at most), then capped
            full = (min(capped, polish) if capped else polish) + 3 + polish * 4 / 3 * largest / s.n_tiles
    per_pass = s.n_tiles * s.features * (s.store_itemsize / READ_BPS + (2 * s.k + 8) / FLOPS)
    on_sample = n_init * iters * min(s.n_tiles, SEED_ROWS) * s.features * (2 * s.k + 8) / FLOPS
    return restarts * (full * per_pass + on_sample)


def _silhouette(s: Sizes) -> tuple[int, float]:
    n = min(s.n_tiles, 10_000)
    memory = n * s.features * (4 + 8) + 2 * 64 * MB + s.n_tiles * 40
    return memory, n * n * s.features * 2 / (4 * FLOPS)


def _kinds_table(s: Sizes) -> int:
    """Reading the evolution's tiles x dates table (landtaxa.products.evolution.read_kinds): the (N, T) kinds and
    one row group of 65,536 tiles."""
    return s.n_tiles * s.n_dates * 8 + 65_536 * s.n_dates * 200


def _map_picture(s: Sizes) -> int:
    return s.n_tiles * 40 + 30 * MB


def _embed(s: Sizes, encoder: str) -> tuple[int, float, int]:
    px = s.tile_size * s.tile_size
    batch = _c(s, "embed.batch_size", 0) or int(min(1024, max(1, round(_cpu_batch(encoder) * (100 / s.tile_size)**2))))
    strip = _c(s, "block_rows", 8) * s.tile_size * s.n_cols * s.tile_size * s.n_bands
    rows, _ = chunk_tiles(math.ceil(s.height / s.tile_size), s.n_cols, s.z_dim * s.store_itemsize)
    memory = (BASE["torch"] + _c(s, "gdal_cache_mb", 256) * MB + 4 * strip * (s.itemsize + 8)
              + batch * px * ACTIVATIONS.get(encoder, ACTIVATIONS["tilenet"])[0] + PARAMETERS.get(encoder, 0) * 4
              + rows * s.n_cols * s.z_dim * 4 * 2 + s.n_tiles * 16 + 60 * MB)
    gflop = ENCODER_GFLOP_100PX.get(encoder, 12.0) * px / 100**2
    seconds = s.n_tiles * gflop * 1e9 / TORCH_FLOPS + s.width * s.height * s.n_bands * s.itemsize / WRITE_BPS
    return memory, seconds, s.n_tiles * (s.z_dim * s.store_itemsize + 5)


def _cpu_batch(encoder: str) -> int:
    return ENCODERS[encoder].cpu_batch_size if encoder in ENCODERS else 8


def _train(s: Sizes, section: str, encoder: str) -> tuple[int, float, int]:
    px = s.tile_size * s.tile_size
    triplets = triplet_budget(_c(s, f"{section}.triplets", 2000), s.n_tiles, s.n_dates)
    tiles = triplets * 3 * s.n_bands * px * 2  # float16 triplet tiles
    cached = min(tiles, _c(s, f"{section}.cache_mb", 2048) * MB)
    batch = _c(s, f"{section}.batch_size", 64)
    params = 16 * PARAMETERS.get(encoder, PARAMETERS["tilenet"])  # weights, gradients and Adam's two moments
    memory = (BASE["torch"] + cached + 3 * batch * px * s.n_bands * 8 + params
              + 3 * batch * px * ACTIVATIONS.get(encoder, ACTIVATIONS["tilenet"])[1]
              + s.n_tiles * 4 * s.n_dates + _c(s, "gdal_cache_mb", 256) * MB)
    gflop = ENCODER_GFLOP_100PX.get(encoder, 12.0) * px / 100**2
    seconds = 3 * triplets * 3 * gflop * 1e9 * _c(s, f"{section}.epochs", 3) / (2 * TORCH_FLOPS)
    disk = params // 4 + (tiles - cached if tiles > cached else 0)
    return memory, seconds, disk


def _align(s: Sizes) -> tuple[int, float, int]:
    strip = _c(s, "block_rows", 8) * s.tile_size * s.width
    memory = BASE["report"] + _c(s, "gdal_cache_mb", 256) * MB + 6 * strip * s.n_bands * (s.itemsize + 8)
    pixels = s.width * s.height
    return memory, pixels * s.n_bands * s.itemsize * 4 / WRITE_BPS, pixels * (s.n_bands * s.itemsize + 1)


# --------------------------------------------------------------------------- the table of rules


def job_needs(rule: str, s: Sizes, encoder: str = "tilenet") -> tuple[int, float, int]:
    """(peak bytes, seconds, bytes written) of one job of ``rule``, before any safety factor."""
    n, t, f = s.n_tiles, s.n_dates, s.features
    blocks, index = _series_reading(s)
    pictures = _map_picture(s)
    if rule in ("embed", "embed_baseline"):
        return _embed(s, encoder)
    if rule in ("train", "refine"):
        return _train(s, rule, encoder)
    if rule == "align":
        return _align(s)
    if rule == "grid":
        return BASE["report"] + 16 * 512 * 512 * s.n_bands * 8 * 3, 60 + s.width * s.height / 1e7, 64 * 1024
    if rule == "demo":
        side = _c(s, "demo.size", 512) * (1 + _c(s, "demo.overlap", 0.1))
        granule = side**2 / _c(s, "demo.granules", 2) ** 2
        images = _c(s, "demo.size", 512) ** 2 * s.n_bands * 2 * t * (1 + _c(s, "demo.overlap", 0.1)) ** 2
        return BASE["report"] + int(granule * s.n_bands * 8 * 6 + side**2 * 8 * 4), 60 + images / WRITE_BPS, images
    if rule in ("series", "series_train"):
        # the index, and with cluster.standardise the moments: from the embedding jobs' sums less the dropped tiles'
        # rows (read in pieces of a block, a float64 copy of each), or for stores written before the sums were kept
        # every kept row: the time allows that one pass
        moments = 2 * blocks if _c(s, "cluster.standardise", "zscore") == "zscore" else 0
        return (BASE["numpy"] + n * (t * 12 + 40) + 65_536 * t * 64 + moments,
                30 + n * t / 1e7 + (n * f * s.store_itemsize / READ_BPS if moments else 0), n * (t * 3 + 16) + MB)
    if rule in ("clusters", "clusters_train"):
        sil_mem, sil_time = _silhouette(s)
        memory = BASE["sklearn"] + max(_clustering(s), blocks + index + sil_mem) + n * 48
        return (memory, _passes(s) + sil_time + n * f * s.store_itemsize / READ_BPS,
                n * 16 + n * s.k * 4 + s.k * f * 4 + MB)
    if rule == "stability":
        restarts = _c(s, "analysis.restarts", 4)
        return BASE["report"] + _clustering(s) + n * 8 * (restarts + 3), _passes(s, restarts), MB
    if rule == "analysis":
        pca = 4 * min(n * f * 4, MEMORY_BYTES)
        tiles = _c(s, "analysis.projection_tiles", 1000)
        projections = tiles * f * 4 * 3 + tiles * tiles * 8 * 8
        memory = BASE["report"] + blocks + index + max(pca, projections) + n * 3 * 8 * 4 + pictures
        seconds = 5 * n * f * (s.store_itemsize / READ_BPS + 6 / FLOPS) + 120 + tiles * tiles * 50 * 50 / FLOPS
        return memory, seconds, n * 8 + 10 * MB
    if rule == "representatives":
        images = s.k * (_c(s, "analysis.representatives", 3) + 8) * t * s.tile_size**2 * s.n_bands * 8
        # no series read: the clustering's (n, K) float32 distances, two of their columns in float64 and their mix;
        # the figure of K x representatives rows by T dates: matplotlib draws each tile's 0.8 in cell at 100 dpi
        # through float RGBA buffers, about 88 bytes a pixel (measured: 372 MB for 30 x 24 cells)
        figure = s.k * _c(s, "analysis.representatives", 3) * t * 80 * 80 * 88
        memory = BASE["report"] + index + n * 16 + n * s.k * 4 + n * 8 * 4 + images + pictures + figure
        return memory, n * s.k * 4 / READ_BPS + 60, 10 * MB
    if rule == "evolution":
        memory = (BASE["report"] + blocks + index + n * t * 8 * 6 + 65_536 * t * 200 + 1024 * s.k * s.z_dim * 4 * 2
                  + 65_536 * t * s.k * 4 + t * n * 6 + t * pictures)
        seconds = n * f * (s.store_itemsize / READ_BPS + 4 * s.k / FLOPS) + n * t * 100 / WRITE_BPS + 30 * t + 60
        return memory, seconds, n * t * 20 + t * n * 2 + 10 * MB
    if rule in ("map", "map_k", "viewer", "kinds"):
        extra = 0
        if rule == "viewer":
            shown = s.k * 3 + _c(s, "analysis.viewer_tiles", 200)
            extra = shown * t * s.tile_size**2 * s.n_bands * 8 * 3
        memory = BASE["report"] + _kinds_table(s) + index + pictures + extra
        return memory, 60 + n * t * 100 / WRITE_BPS, n * 8 + 5 * MB + extra // 3
    if rule == "tiles":
        return BASE["report"] + n * 400 * 3, 60 + n * 400 / WRITE_BPS, n * 200
    if rule == "coverage":
        return BASE["report"] + n * 8 * (t + 2), 30 + n * t / 1e7, n * 2 + MB
    if rule == "truth":
        strip = _c(s, "block_rows", 8) * s.tile_size * s.width
        return BASE["report"] + strip * 40 + n * 16 + 256 * MB, 30 + s.width * s.height / 5e6, n * 8 + MB
    if rule in ("metrics", "k_choice", "untrained"):
        return (BASE["torch"] if rule == "untrained" else BASE["report"]) + 50 * MB, 30, MB
    raise KeyError(f"no resource estimate for rule {rule!r}")


def job_resources(rule: str, s: Sizes, encoder: str = "tilenet", attempt: int = 1) -> dict[str, int]:
    """``mem_mb``, ``runtime`` (minutes) and ``disk_mb`` to request for one job of ``rule``."""
    memory, seconds, disk = job_needs(rule, s, encoder)
    return {
        "mem_mb": int(math.ceil(memory * SAFETY / MB)) * attempt,
        "runtime": max(MIN_RUNTIME, int(math.ceil(seconds * TIME_SAFETY / 60))) * attempt,
        "disk_mb": int(math.ceil(disk * SAFETY / MB)) + 100,
    }
