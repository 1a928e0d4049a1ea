"""Time-series assembly: every tile becomes a (T, D) series of its per-date embeddings.

A tile-date whose tile was not valid enough is filled from the same tile's nearest valid
date (the earlier one on a tie). Tiles missing on more than ``max_missing`` of the dates
(or on all of them) are dropped from the series and appear as nodata on the maps.

The series is never copied into one array. The series step writes the cube of the model's
dates (:mod:`landtaxa.learning.cube`: links to the per-date stores, a few kilobytes) and an index,
``results/series/<model>.npz``: ``tile_ids`` (N,) of the kept tiles, ``dates`` (T,),
``valid`` (N, T), ``source`` (N, T), the date each value comes from, ``cube``, the
cube's path relative to the index, and, with ``cluster.standardise: zscore``, ``mean`` and ``sd``
(T, D): every feature's moments over the kept tiles (filled values included: what the clustering sees),
by which the series is read standardised (zero mean, unit variance per feature), so that no single
direction of the embedding decides the clusters, and the clustering and all measured on it (metrics,
stability, evolution, analysis) see the same space. No pass over the series is made for them: every
embedding job sums its date's valid values as it writes them (:class:`landtaxa.learning.cube.EmbeddingWriter`), and
the series step takes off the rows of the dropped tiles and adds those of the filled tile-dates, the only
rows it reads (:func:`series_sums`). The cube keeps the raw embeddings. Every later step reads the series
through :class:`Series`: in blocks of tiles, (m, T, D) float32 filled on the fly (about
:data:`BLOCK_BYTES` each, read ahead in a background thread), or as chosen tiles
(:meth:`Series.take`, for samples and representatives). Its memory is a few blocks, whatever
the region. :class:`ArraySeries` offers the same reading of an (N, T, D) array in memory.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from landtaxa.inputs.grid import Grid
from landtaxa.learning.cube import ZArray, embedding_store, read_moments, read_valid, write_cube
from landtaxa.params import SeriesParams
from landtaxa.storage import get_logger, load_npz, prefetch, save_npz

log = get_logger()

BLOCK_BYTES = 32 << 20  # float32 bytes of one block of tiles read from the cube
# A series up to this size (float32) is read whole where a step needs every series at once (k-means++
# seeding, PCA colours, mini-batch K-means in memory); a larger one is sampled there (see each step).
MEMORY_BYTES = 256 << 20
# A series of at most this many blocks' bytes (float32; its passes held that much in flight anyway) is kept in
# memory as its first pass read it: K-means makes one pass per iteration, and the restarts of a clustering
# and of the stability check dozens of passes, each otherwise a new read and standardisation of every block.
KEEP_BLOCKS = 2
# k-means++ seeds from every series up to SEED_ROWS of them, else from a sample of that many (at most SEED_BYTES)
SEED_ROWS = 4096
SEED_BYTES = MEMORY_BYTES
INDEX_ROWS = 1 << 16  # tiles per block when the index is computed


def nearest_valid_index(valid: np.ndarray) -> np.ndarray:
    """For an (N, T) validity matrix, the index of each entry's nearest valid date.

    Rows with no valid date get -1 everywhere.
    """
    n, t = valid.shape
    steps = np.arange(t)
    prev = np.maximum.accumulate(np.where(valid, steps, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(valid, steps, t)[:, ::-1], axis=1)[:, ::-1]
    use_next = (prev < 0) | ((nxt < t) & (nxt - steps < steps - prev))
    out = np.where(use_next, nxt, prev)
    out[~valid.any(axis=1)] = -1
    return out


def source_dates(valid: np.ndarray) -> np.ndarray:
    """:func:`nearest_valid_index` of an (N, T) validity matrix, block by block, as the smallest int type."""
    dtype = np.int16 if valid.shape[1] < np.iinfo(np.int16).max else np.int32
    out = np.empty(valid.shape, dtype)
    for s in range(0, len(valid), INDEX_ROWS):
        out[s:s + INDEX_ROWS] = nearest_valid_index(valid[s:s + INDEX_ROWS])
    return out


def assemble_series(
    embedding_paths: Sequence[str | os.PathLike],
    dates: Sequence[str],
    out_path: str | os.PathLike,
    max_missing: float = 0.5,
    cube_path: str | os.PathLike | None = None,
    standardise: str = "none",
) -> None:
    """The series of per-date embedding stores: the cube of their dates and the index (module docstring).

    ``cube_path`` defaults to ``out_path`` with the suffix ``.zarr``. Only the per-date validity is
    read: the embeddings stay where their jobs wrote them. With ``standardise="zscore"`` the index holds
    the moments of every feature of the series over its tiles (:func:`feature_moments`'s), from the sums the
    embedding jobs kept, less the dropped tiles' rows and plus the filled tile-dates' (:func:`series_sums`:
    no pass over the series).
    """
    if len(embedding_paths) != len(dates):
        raise ValueError(f"{len(embedding_paths)} embedding files for {len(dates)} dates")
    out_path = Path(out_path)
    cube = Path(cube_path) if cube_path else out_path.with_suffix(".zarr")
    valid = np.stack([read_valid(p) for p in embedding_paths], axis=1)  # (n_tiles, T)
    ever = valid.any(axis=1)
    missing = 1.0 - valid.mean(axis=1)
    keep = ever & (missing <= max_missing)
    tile_ids = np.flatnonzero(keep)
    kept_valid = valid[keep]
    source = source_dates(kept_valid)
    write_cube(cube, embedding_paths, dates)
    log.info(
        "series: %d tiles x %d dates; %d tiles dropped (missing > %.0f%% of dates); "
        "%d tile-dates filled from the nearest valid date",
        len(tile_ids), len(dates), int((~keep & ever).sum()) + int((~ever).sum()),
        100 * max_missing, int((~kept_valid).sum()),
    )
    index = {"tile_ids": tile_ids.astype(np.int64), "dates": np.asarray(dates, dtype="U10"), "valid": kept_valid,
             "source": source, "cube": np.array(os.path.relpath(cube.absolute(), out_path.absolute().parent))}
    save_npz(out_path, **index)
    if standardise == "zscore" and len(tile_ids):
        sums, read = series_sums(embedding_paths, valid, keep, source)
        mean, sd = _moments(sums[:, 0], sums[:, 1], len(tile_ids))
        save_npz(out_path, **index, mean=mean, sd=sd)
        log.info("series standardised from the embedding jobs' sums (%d rows read of the series' %d x %d); "
                 "feature sd %.3g to %.3g", read, len(tile_ids), len(dates), float(sd.min()), float(sd.max()))


def series_sums(stores: Sequence[str | os.PathLike], valid: np.ndarray, keep: np.ndarray,
                source: np.ndarray) -> tuple[np.ndarray, int]:
    """(T, 2, D) float64 sums of every feature and of its square over the series' values of each date (the kept
    tiles, filled ones with their source date's value, as :class:`Series` reads them), and the rows read for them.

    ``valid`` (n_tiles, T) is every tile's validity, ``keep`` (n_tiles,) the kept tiles and ``source`` (N, T)
    their source dates (:func:`source_dates`). A date's store holds the sums over all its valid tiles
    (:func:`landtaxa.learning.cube.read_moments`): the rows of the dropped tiles valid that date are taken off and those
    of the filled tile-dates added, the only rows read. Where the kept rows are fewer than the dropped ones, or the
    store holds no sums (written by an earlier version), that date's kept rows are read and summed instead.
    """
    n_t = len(stores)
    sums, read = np.zeros((n_t, 2, ZArray(Path(stores[0]) / "embedding").shape[-1])), 0
    kept_ids = np.flatnonzero(keep)
    filled = source != np.arange(n_t)  # (N, T): the tile-dates that take another date's value
    for s, store in enumerate(stores):
        array = ZArray(Path(store) / "embedding")
        on = valid[:, s]
        stored = read_moments(store)
        if stored is not None and stored[0] != int(on.sum()):
            raise ValueError(f"{store}: its moments count {stored[0]} valid tiles, its valid array {int(on.sum())}: "
                             "the store is inconsistent; delete it and rerun the workflow to rebuild it")
        kept, dropped = np.flatnonzero(on & keep), np.flatnonzero(on & ~keep)
        if stored is not None and len(dropped) <= len(kept):
            sums[s] += stored[1] - _weighted_sums(array, dropped, None, store)[0]
            read += len(dropped)
        else:
            sums[s] += _weighted_sums(array, kept, None, store)[0]
            read += len(kept)
        takes = (source == s) & filled  # the tile-dates filled from date s: its value counts on their date
        rows = np.flatnonzero(takes.any(axis=1))
        if len(rows):
            sums += _weighted_sums(array, kept_ids[rows], takes[rows], store)
            read += len(rows)
    return sums, read


def _weighted_sums(array: ZArray, tile_ids: np.ndarray, weights: np.ndarray | None,
                   store: str | os.PathLike) -> np.ndarray:
    """(J, 2, D) float64 ``weights.T @ x`` and ``weights.T @ (x * x)`` over the rows x of one date's embedding
    ``array`` (y, x, feature) at sorted ``tile_ids``, for (len(tile_ids), J) 0/1 ``weights`` (None: one column of
    ones). Read chunk by chunk in pieces of at most about :data:`BLOCK_BYTES` in float64
    (:meth:`landtaxa.learning.cube.ZArray.read_tiles`)."""
    cr, cc, d = array.chunks
    w = np.ones((len(tile_ids), 1)) if weights is None else np.asarray(weights, np.float64)
    out = np.zeros((w.shape[1], 2, d))
    rows, cols = np.divmod(tile_ids, array.shape[1])
    chunk = (rows // cr) * array.n_chunks(1) + cols // cc
    local = (rows % cr) * cc + cols % cc
    order = np.argsort(chunk, kind="stable")  # sorted ids: within a chunk, rows ascend
    step = max(1, BLOCK_BYTES // (d * 8))
    for group in np.split(order, np.flatnonzero(np.diff(chunk[order])) + 1) if len(order) else []:
        index = (*divmod(int(chunk[group[0]]), array.n_chunks(1)), 0)
        for piece in np.split(group, range(step, len(group), step)):
            data = array.read_tiles(index, local[piece])
            if data is None:  # these tiles are valid on the date: their chunk must exist
                raise FileNotFoundError(f"{store}: chunk {index} of its embeddings is missing; the store is "
                                        "incomplete: rerun the workflow to rebuild it")
            x = data.astype(np.float64)
            out[:, 0] += w[piece].T @ x
            out[:, 1] += w[piece].T @ (x * x)
    return out


def _moments(s: np.ndarray, s2: np.ndarray, n) -> tuple[np.ndarray, np.ndarray]:
    """float32 mean and standard deviation from float64 sums of x and x * x over ``n`` values; a constant
    feature gets sd 1."""
    mean = s / n
    sd = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    return mean.astype(np.float32), np.where(sd > 1e-12, sd, 1.0).astype(np.float32)


def feature_moments(series) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) float32 mean and standard deviation of every feature over the series' tiles (one pass of
    blocks, sums in float64); a constant feature gets sd 1."""
    n, t, d = series.shape
    s = np.zeros((t, d), np.float64)
    s2 = np.zeros((t, d), np.float64)
    for _, block in series.blocks():
        x = block.astype(np.float64)
        s += x.sum(axis=0)
        s2 += np.einsum("ntd,ntd->td", x, x)
    return _moments(s, s2, n)


def series_step(*, embeddings: list[str], dates: list[str], out: str, cube: str | None = None,
                params: SeriesParams) -> None:
    """The N x T x D series of one model from its per-date embeddings (in date order): its cube and index."""
    assemble_series(embeddings, dates, out, max_missing=params.max_missing, cube_path=cube,
                    standardise=params.standardise)


# --------------------------------------------------------------------------- reading


class ArraySeries:
    """An (N, ...) array in memory, read the way :class:`Series` reads the cube (one block: the array).

    A float32 C-contiguous array is used as it is (no copy); another is converted to float32 once.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.ascontiguousarray(x, np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x.shape[1:], dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.n * self.n_features * 4

    def blocks(self, order: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions, rows): the whole array as one block (``order`` is ignored: there is one block)."""
        yield np.arange(self.n), self.x

    def n_blocks(self) -> int:
        return 1

    def take(self, positions: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(positions)]

    def subset(self, positions: np.ndarray) -> ArrayRows:
        """The rows at sorted ``positions`` only (views of the array's runs of consecutive rows, no copy)."""
        return ArrayRows(self.x, positions)

    def load(self) -> np.ndarray:
        return self.x


class ArrayRows(ArraySeries):
    """Chosen rows of an (N, ...) array in memory (sorted positions), read in blocks that are views of its runs
    of consecutive rows: :meth:`ArraySeries.subset`."""

    def __init__(self, x: np.ndarray, positions: np.ndarray) -> None:
        super().__init__(x)
        self.rows = np.asarray(positions, np.int64)
        self.runs = np.split(np.arange(len(self.rows)), np.flatnonzero(np.diff(self.rows) != 1) + 1) \
            if len(self.rows) else []

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.x.shape[1:])

    @property
    def n(self) -> int:
        return len(self.rows)

    def blocks(self, order: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(len(self.runs)) if order is None else order:
            run = self.runs[i]
            start = self.rows[run[0]]
            yield run, self.x[start:start + len(run)]

    def n_blocks(self) -> int:
        return len(self.runs)

    def take(self, positions: np.ndarray) -> np.ndarray:
        return self.x[self.rows[np.asarray(positions)]]

    def subset(self, positions: np.ndarray) -> ArrayRows:
        return ArrayRows(self.x, self.rows[np.asarray(positions)])

    def load(self) -> np.ndarray:
        return self.x[self.rows]


class Series:
    """The series of one model read from its cube: N kept tiles x T dates x D features, float32.

    ``tile_ids``, ``dates``, ``valid`` (N, T) and ``source`` (N, T) come from the index; the
    embeddings are read chunk by chunk, each chunk of the grid once per date that supplies one
    of its tiles' values, and filled on the fly (a missing tile-date takes its source date's value).
    """

    def __init__(self, path: str | os.PathLike, block_bytes: int = BLOCK_BYTES) -> None:
        self.path = Path(path)
        index = load_npz(self.path)
        if "source" not in index:
            raise ValueError(f"{self.path}: not a series index (tile_ids, dates, valid, source, cube)")
        self.tile_ids = index["tile_ids"]
        self.dates = index["dates"]
        self.valid = index["valid"]
        self.source = index["source"]
        self.standardised = "mean" in index  # read as (x - mean) / sd (cluster.standardise)
        self._mean, self._sd = index.get("mean"), index.get("sd")
        self.cube = self.path.parent / str(index["cube"])
        self.array = ZArray(self.cube / "embedding")
        n_t, n_rows, n_cols, d = self.array.shape
        if n_t != len(self.dates):
            raise ValueError(f"{self.cube}: {n_t} dates in the cube for the index's {len(self.dates)}")
        for t, date in enumerate(self.dates):  # the cube links to the per-date stores: each must still be there
            link = self.cube / "embedding" / str(t)
            if not link.exists():
                target = f" (a link to {os.readlink(link)})" if link.is_symlink() else ""
                raise FileNotFoundError(f"{self.path}: the embeddings of {date} are gone: {link}{target} does not "
                                        "exist; rerun the workflow to rebuild them and this series")
        _, cr, cc, _ = self.array.chunks
        rows, cols = np.divmod(self.tile_ids, n_cols)
        self._chunk = (rows // cr) * self.array.n_chunks(2) + cols // cc
        self._local = (rows % cr) * cc + cols % cc  # a tile's place in its chunk
        self._col_chunks = self.array.n_chunks(2)
        self._block_bytes = block_bytes
        self._plan = self._planned()
        self._kept: list[tuple[np.ndarray, np.ndarray]] | None = None  # the blocks of a small series, once read

    def _planned(self) -> list[list[np.ndarray]]:
        """The blocks of a pass: pieces (tiles of one chunk, at most a block's worth: a piece reads its span of the
        chunk only) gathered into blocks of about ``block_bytes``."""
        order = np.argsort(self._chunk, kind="stable")  # within a chunk, tile order is the chunk's own
        bounds = np.flatnonzero(np.diff(self._chunk[order])) + 1
        rows = max(1, self._block_bytes // (self.array.shape[0] * self.array.shape[3] * 4))
        pieces = [p for group in (np.split(order, bounds) if len(order) else [])
                  for p in np.split(group, range(rows, len(group), rows))]
        return self._blocks_of(pieces, rows)

    def subset(self, positions: np.ndarray) -> Series:
        """The series of the tiles at sorted ``positions`` only, read the same way (positions of the subset's own
        blocks count from 0): a view, nothing is read or copied."""
        positions = np.asarray(positions, np.int64)
        view = copy.copy(self)
        for name in ("tile_ids", "valid", "source", "_chunk", "_local"):
            setattr(view, name, getattr(self, name)[positions])
        view._plan = view._planned()
        view._kept = None
        return view

    @staticmethod
    def _blocks_of(pieces: list[np.ndarray], rows: int) -> list[list[np.ndarray]]:
        """Consecutive pieces gathered into blocks of at most ``rows`` tiles."""
        plan, current, size = [], [], 0
        for piece in pieces:
            if current and size + len(piece) > rows:
                plan.append(current)
                current, size = [], 0
            current.append(piece)
            size += len(piece)
        if current:
            plan.append(current)
        return plan

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.tile_ids), self.array.shape[0], self.array.shape[3]

    @property
    def n(self) -> int:
        return len(self.tile_ids)

    @property
    def n_features(self) -> int:
        return self.array.shape[0] * self.array.shape[3]

    @property
    def nbytes(self) -> int:
        """Bytes of the whole series in float32 (what holding it in memory would take)."""
        return self.n * self.n_features * 4

    def n_blocks(self) -> int:
        return len(self._plan)

    def _fill(self, out: np.ndarray, positions: np.ndarray) -> None:
        """Fill ``out`` (m, T, D) with the series of ``positions``, all in one chunk of the grid: each date
        that supplies a value is read once, over the span of the chunk that these tiles cover (tile by
        tile when they are few and far apart, as in a sample)."""
        chunk = int(self._chunk[positions[0]])
        r, c = divmod(chunk, self._col_chunks)
        src = self.source[positions]
        local = self._local[positions]
        for s in np.unique(src):
            data = self.array.read_tiles((int(s), r, c, 0), local)
            if data is None:  # the index says these tiles hold a value on date s: its chunk must exist
                raise FileNotFoundError(f"{self.path}: chunk {(int(s), r, c, 0)} of {self.cube / 'embedding'} "
                                        f"({self.dates[int(s)]}) is missing; its embedding store is incomplete: "
                                        "rerun the workflow to rebuild it")
            hit = src == s
            if hit[:, s].all() and hit.sum() == len(src):
                out[:, s] = data
            else:
                rows, dates = np.nonzero(hit)
                out[rows, dates] = data[rows]

    def _read_block(self, pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        positions = np.concatenate(pieces)
        n_t, d = self.array.shape[0], self.array.shape[3]
        out = np.empty((len(positions), n_t, d), np.float32)
        start = 0
        for piece in pieces:
            self._fill(out[start:start + len(piece)], piece)
            start += len(piece)
        return positions, self._standard(out)

    def _standard(self, x: np.ndarray) -> np.ndarray:
        """The standardised series (in place), when the index holds the moments."""
        if self.standardised:
            x -= self._mean
            x /= self._sd
        return x

    def blocks(self, order: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions (m,), series (m, T, D) float32) for every block, in ``order`` (a permutation of
        ``range(n_blocks())``) or else cached first (:meth:`cached_first`); the next block is read while this
        one is used. A series of at most :data:`KEEP_BLOCKS` blocks' bytes is read once and its blocks kept
        (read-only), in tile order."""
        if self.nbytes <= KEEP_BLOCKS * self._block_bytes:  # kept in memory: passes after the first read nothing
            if self._kept is None:
                self._kept = [self._read_block(pieces) for pieces in self._plan]
                for positions, x in self._kept:  # shared by every pass: a step must not change them
                    positions.flags.writeable = x.flags.writeable = False
            yield from (self._kept[i] for i in (range(len(self._kept)) if order is None else order))
            return
        if order is None:
            order = self.cached_first()
        plan = self._plan if order is None else [self._plan[i] for i in order]
        yield from prefetch((self._read_block(pieces) for pieces in plan), depth=1)

    def cached_first(self) -> np.ndarray | None:
        """The order of a pass that reads the blocks held in the page cache first, else None (tile order).

        A series larger than the memory left for the page cache cannot stay there whole: read in the same
        order every pass, each block is evicted just before it is needed again and every pass reads it all
        from disk. Read cached blocks first, and the blocks read from disk evict those already used in
        this pass: each pass then reads from disk only what does not fit. A block ranks by the dates on
        which the first page of its span is in the page cache (a read with ``RWF_NOWAIT``; a chunk never
        written counts as cached). Every block is still read once, but the order, and so the rounding of
        float64 sums over blocks (moments, K-means centres), follows what the cache holds: a rerun on a
        series larger than memory agrees to that rounding, not to the bit.
        """
        if len(self._plan) < 2 or not hasattr(os, "RWF_NOWAIT"):
            return None
        n_t = self.array.shape[0]
        page = bytearray(4096)
        cached = np.zeros(len(self._plan), np.int64)
        for b, pieces in enumerate(self._plan):
            piece = pieces[0]
            r, c = divmod(int(self._chunk[piece[0]]), self._col_chunks)
            offset = int(self._local[piece].min()) * self.array.shape[3] * self.array.dtype.itemsize
            for t in range(n_t):
                try:
                    fd = os.open(self.array.key((t, r, c, 0)), os.O_RDONLY)
                except FileNotFoundError:  # never written (no tile valid there): nothing to read
                    cached[b] += 1
                    continue
                except OSError:
                    continue
                try:
                    os.preadv(fd, [page], offset, os.RWF_NOWAIT)
                    cached[b] += 1
                except BlockingIOError:
                    pass
                except OSError:  # a file system that cannot tell: tile order
                    return None
                finally:
                    os.close(fd)
        if cached.min() == cached.max():
            return None
        return np.argsort(-cached, kind="stable")

    def take(self, positions: np.ndarray) -> np.ndarray:
        """(len(positions), T, D) float32: the series at ``positions`` (into the kept tiles), in that order."""
        positions = np.asarray(positions, np.int64)
        n_t, d = self.array.shape[0], self.array.shape[3]
        out = np.empty((len(positions), n_t, d), np.float32)
        if len(positions) == 0:
            return out
        chunks = self._chunk[positions]
        order = np.argsort(chunks, kind="stable")
        bounds = np.flatnonzero(np.diff(chunks[order])) + 1
        for sel in np.split(order, bounds):
            part = np.empty((len(sel), n_t, d), np.float32)
            self._fill(part, positions[sel])
            out[sel] = part
        return self._standard(out)

    def load(self) -> np.ndarray:
        """The whole (N, T, D) float32 series in memory (small series only: see ``nbytes``)."""
        out = np.empty(self.shape, np.float32)
        for positions, block in self.blocks():
            out[positions] = block
        return out


def as_series(series) -> Series | ArraySeries:
    """``series`` itself when it reads blocks (a :class:`Series`), else the array wrapped in :class:`ArraySeries`."""
    return series if hasattr(series, "blocks") else ArraySeries(series)


def sample_rows(series, size: int, rng: np.random.RandomState) -> np.ndarray:
    """Sorted positions of ``size`` series drawn without replacement (all of them when there are fewer)."""
    if series.n <= size:
        return np.arange(series.n)
    return np.sort(rng.choice(series.n, size, replace=False))


def save_series(path: str | os.PathLike, x: np.ndarray, tile_ids: np.ndarray, dates: Sequence[str], grid=None,
                valid: np.ndarray | None = None, dtype: str = "float32") -> Series:
    """Write an (N, T, D) array as a series (per-date stores, cube, index) and open it: for tests and benchmarks.

    The per-date stores go to ``<path without suffix>_dates/<date>.zarr``. ``valid`` (N, T) (default: all
    True) marks the tile-dates embedded; the others are filled from their nearest valid date, as in a run.
    ``grid`` defaults to one row of ``max(tile_ids) + 1`` one-metre tiles.
    """

    path = Path(path)
    x = np.asarray(x, np.float32)
    tile_ids = np.asarray(tile_ids, np.int64)
    n, n_t, d = x.shape
    valid = np.ones((n, n_t), bool) if valid is None else np.asarray(valid, bool)
    if grid is None:
        width = int(tile_ids.max()) + 1
        grid = Grid(crs="EPSG:3857", transform=(1.0, 0.0, 0.0, 0.0, -1.0, 1.0), width=width, height=1, tile_size=1,
                    bands=[1], dtype="float32")
    folder = path.with_name(f"{path.stem}_dates")
    stores = []
    for t, date in enumerate(dates):
        ok = np.zeros(grid.n_tiles, bool)
        ok[tile_ids[valid[:, t]]] = True
        store = folder / f"{date}.zarr"
        with embedding_store(store, grid, d, ok, dtype, {"date": str(date)}, fraction=ok) as writer:
            order = np.argsort(tile_ids[valid[:, t]])
            writer.put(tile_ids[valid[:, t]][order], x[valid[:, t], t][order])
        stores.append(store)
    assemble_series(stores, [str(dt) for dt in dates], path, max_missing=1.0)
    return Series(path)
