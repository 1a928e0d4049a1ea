"""The embedding cube: every tile's embedding on every date, in a chunked Zarr store on disk.

landtaxa writes and reads the store itself with numpy (Zarr format 2: a folder per array
holding ``.zarray``/``.zattrs`` JSON and one uncompressed file per chunk, chunk keys joined
with ``/``), so no job needs the zarr package; xarray (``xarray.open_zarr``) and any Zarr
reader open it as a georeferenced cube, and rioxarray finds its CRS.

One date, written by its embedding job chunk by chunk as the windows of tiles are encoded
(``results/embeddings/<model>/<date>.zarr``)::

    embedding    (y, x, feature)   float32 (or float16): NaN where the tile was not embedded
    valid        (y, x)            bool: the tile had enough valid pixels that date
    moments      (moment, feature) float64: the sum and the sum of squares of every feature over the
                                   valid tiles, as stored (``count`` of them in its attributes)
    y, x         tile centres in the grid's CRS;  feature: 0..D-1
    spatial_ref  the grid's CRS (``crs_wkt``) and the geotransform of a one-pixel-per-tile map

The cube of a model's dates (``results/embeddings/<model>.zarr``, written by the series step)
has the same variables with a leading ``time`` dimension (CF ``days since 1970-01-01``). Its
time slices are not copies: ``embedding/<t>`` (and ``valid``, ``fraction``) are relative symbolic links to
the per-date arrays' folders, so chunk ``t/r/c/0`` of the cube is chunk ``r/c/0`` of date t.
A cube therefore costs a few kilobytes, and adding a date writes that date only.

Chunks hold ``rows x cols`` tiles with every feature (about :data:`CHUNK_BYTES` each), spanning
the grid's whole width when it fits; a chunk where no tile was embedded is not written (Zarr
reads it as its fill value, NaN). Every store is written under a temporary name beside its
final one and renamed when complete, so a killed job leaves no half-written store behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

CHUNK_BYTES = 1 << 20  # target size of one chunk file of an embedding array
DTYPES = ("float32", "float16")
FLOAT16_MAX = float(np.finfo(np.float16).max)
EPOCH = dt.date(1970, 1, 1)


# --------------------------------------------------------------------------- Zarr v2 arrays


def chunk_tiles(n_rows: int, n_cols: int, tile_bytes: int) -> tuple[int, int]:
    """(rows, cols) of tiles per chunk: at most about CHUNK_BYTES, whole rows of the grid when they fit,
    and the grid split into chunks of even size (edge chunks are padded on disk: little padding)."""
    tiles = max(1, CHUNK_BYTES // max(1, tile_bytes))
    cols = _even(n_cols, min(n_cols, tiles))
    return _even(n_rows, min(n_rows, max(1, tiles // cols))), cols


def _even(n: int, size: int) -> int:
    """The smallest chunk size that splits ``n`` into as many chunks as ``size`` does."""
    return -(-n // -(-n // size)) if n else size


class ZArray:
    """One Zarr v2 array on disk (uncompressed, C order, ``/`` between chunk indexes)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        meta = json.loads((self.path / ".zarray").read_text())
        if meta.get("compressor") is not None or meta.get("filters"):
            raise ValueError(f"{self.path}: compressed Zarr arrays are not read by landtaxa")
        self.shape = tuple(meta["shape"])
        self.chunks = tuple(meta["chunks"])
        self.dtype = np.dtype(meta["dtype"])
        fill = meta.get("fill_value")
        self.fill = np.nan if fill == "NaN" else (0 if fill is None else fill)
        self.separator = meta.get("dimension_separator", ".")

    @staticmethod
    def create(path: str | os.PathLike, shape: Sequence[int], chunks: Sequence[int], dtype, dims: Sequence[str],
               attrs: dict | None = None, fill=None) -> ZArray:
        """Write the metadata of a new array (its chunks are written with :meth:`write_chunk`).

        ``fill`` is Zarr's fill value (what a chunk never written holds): None (no fill value: every
        chunk is written) or ``"NaN"``.
        """
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        dtype = np.dtype(dtype)
        meta = {"zarr_format": 2, "shape": list(shape), "chunks": list(chunks), "dtype": dtype.str,
                "compressor": None, "fill_value": fill, "order": "C", "filters": None, "dimension_separator": "/"}
        (p / ".zarray").write_text(json.dumps(meta, indent=1))
        (p / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": list(dims), **(attrs or {})}, indent=1))
        return ZArray(p)

    def key(self, index: Sequence[int]) -> Path:
        return self.path / (self.separator.join(map(str, index)) if index else "0")

    def n_chunks(self, axis: int) -> int:
        return -(-self.shape[axis] // self.chunks[axis]) if self.shape[axis] else 0

    def write_chunk(self, index: Sequence[int], data: np.ndarray) -> None:
        """Write one chunk: ``data`` (at most the chunk's shape: edge chunks are padded with the fill value)."""
        full = np.asarray(data, self.dtype)
        if full.shape != self.chunks:
            padded = np.full(self.chunks, self.fill, self.dtype)
            padded[tuple(slice(0, s) for s in full.shape)] = full
            full = padded
        path = self.key(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(np.ascontiguousarray(full).tobytes())

    def read_chunk(self, index: Sequence[int]) -> np.ndarray | None:
        """One chunk (its full shape, edge chunks included), or None where it was never written."""
        try:
            data = np.fromfile(self.key(index), self.dtype)
        except FileNotFoundError:
            return None
        return data.reshape(self.chunks)

    def read_rows(self, index: Sequence[int], start: int, stop: int) -> np.ndarray | None:
        """Rows ``start:stop`` of one chunk seen as (rows, last axis) (a tile's vector is one row), read
        alone from the file; None where the chunk was never written."""
        width = self.chunks[-1]
        try:
            data = np.fromfile(self.key(index), self.dtype, count=(stop - start) * width,
                               offset=start * width * self.dtype.itemsize)
        except FileNotFoundError:
            return None
        return data.reshape(stop - start, width)

    def read_picked(self, index: Sequence[int], rows: np.ndarray) -> np.ndarray | None:
        """Chosen ``rows`` of one chunk seen as (rows, last axis), each read alone (for a few scattered
        tiles: far less than the chunk's span); None where the chunk was never written."""
        width = self.chunks[-1]
        row_bytes = width * self.dtype.itemsize
        out = np.empty((len(rows), width), self.dtype)
        try:
            with open(self.key(index), "rb") as fh:
                for i, row in enumerate(rows):
                    fh.seek(int(row) * row_bytes)
                    out[i] = np.frombuffer(fh.read(row_bytes), self.dtype)
        except FileNotFoundError:
            return None
        return out

    def read_tiles(self, index: Sequence[int], rows: np.ndarray) -> np.ndarray | None:
        """Chosen ``rows`` of one chunk seen as (rows, last axis), in their order: read over their span at once
        (:meth:`read_rows`), or each alone when they are few and far apart, as in a sample
        (:meth:`read_picked`); None where the chunk was never written."""
        lo, hi = int(rows.min()), int(rows.max()) + 1
        if hi - lo > 8 * len(rows):
            return self.read_picked(index, rows)
        data = self.read_rows(index, lo, hi)
        return None if data is None else data[rows - lo]

    def read(self) -> np.ndarray:
        """The whole array (for small arrays: coordinates, validity)."""
        out = np.full(self.shape, self.fill, self.dtype)
        grid = [range(self.n_chunks(a)) for a in range(len(self.shape))]
        for index in np.ndindex(*[len(g) for g in grid]) if self.shape else [()]:
            data = self.read_chunk(index)
            if data is None:
                continue
            where = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, self.chunks, self.shape,
                                                                                strict=True))
            out[where] = data[tuple(slice(0, w.stop - w.start) for w in where)]
        return out

    @property
    def attrs(self) -> dict:
        return json.loads((self.path / ".zattrs").read_text())


def write_array(path: str | os.PathLike, data: np.ndarray, dims: Sequence[str], chunks: Sequence[int] | None = None,
                attrs: dict | None = None) -> ZArray:
    """Write a whole (small) array, chunk by chunk."""
    data = np.asarray(data)
    chunks = tuple(chunks or data.shape)
    arr = ZArray.create(path, data.shape, chunks, data.dtype, dims, attrs)
    if data.ndim == 0:
        arr.write_chunk((), data)
        return arr
    for index in np.ndindex(*[arr.n_chunks(a) for a in range(data.ndim)]):
        arr.write_chunk(index, data[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks, strict=True))])
    return arr


def write_group(path: str | os.PathLike, attrs: dict) -> None:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    (p / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (p / ".zattrs").write_text(json.dumps(attrs, indent=1))


def consolidate(path: str | os.PathLike) -> None:
    """Gather the group's metadata in ``.zmetadata`` (what xarray reads first)."""
    p = Path(path)
    meta = {name: json.loads((p / name).read_text()) for name in (".zgroup", ".zattrs")}
    for child in sorted(c for c in p.iterdir() if (c / ".zarray").exists()):
        for name in (".zarray", ".zattrs"):
            meta[f"{child.name}/{name}"] = json.loads((child / name).read_text())
    (p / ".zmetadata").write_text(json.dumps({"zarr_consolidated_format": 1, "metadata": meta}, indent=1))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` when the block succeeds, else is removed.

    The temporary name (``.<stem>.tmp<pid><suffix>``) sits in the same folder, so relative links
    written inside it stay right after the rename.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.tmp{os.getpid()}{final.suffix}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        yield tmp
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# --------------------------------------------------------------------------- coordinates


def write_coordinates(group: Path, grid, z_dim: int) -> None:
    """``y``, ``x`` (tile centres in the grid's CRS), ``feature`` and ``spatial_ref`` (the CRS, for rioxarray)."""
    from rasterio.crs import CRS

    t = grid.tile_transform
    crs = CRS.from_user_input(grid.crs)
    geographic = crs.is_geographic
    x = t.c + (np.arange(grid.n_cols) + 0.5) * t.a
    y = t.f + (np.arange(grid.n_rows) + 0.5) * t.e
    names = (("longitude", "degrees_east"), ("latitude", "degrees_north")) if geographic else \
        (("projection_x_coordinate", "m"), ("projection_y_coordinate", "m"))
    write_array(group / "x", x, ["x"], attrs={"standard_name": names[0][0], "units": names[0][1], "axis": "X",
                                               "long_name": "tile centre x"})
    write_array(group / "y", y, ["y"], attrs={"standard_name": names[1][0], "units": names[1][1], "axis": "Y",
                                               "long_name": "tile centre y"})
    write_array(group / "feature", np.arange(z_dim, dtype=np.int32), ["feature"],
                attrs={"long_name": "embedding dimension"})
    wkt = crs.to_wkt()
    write_array(group / "spatial_ref", np.array(0, np.int64), [],
                attrs={"crs_wkt": wkt, "spatial_ref": wkt,
                       "GeoTransform": " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))})


def _copy_coordinates(source: Path, group: Path) -> None:
    for name in ("x", "y", "feature", "spatial_ref"):
        shutil.copytree(source / name, group / name)


def days(date: str) -> int:
    return (dt.date.fromisoformat(str(date)) - EPOCH).days


# --------------------------------------------------------------------------- one date


class EmbeddingWriter:
    """One date's embeddings, written chunk by chunk as the windows of tiles arrive, in any order.

    A chunk is written as soon as every valid tile in it has been put, so the writer holds only the
    chunks the current windows have begun: with windows of whole chunks (the embedding job's), none
    outlives its window, and the job's memory grows with neither the region's height nor its width.
    It sums every feature (and its square) over the valid tiles as they arrive, so that the series step
    gets their moments without reading the embeddings again.
    """

    def __init__(self, path: Path, grid, z_dim: int, valid: np.ndarray, dtype: str = "float32",
                 attrs: dict | None = None, fraction: np.ndarray | None = None) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"embedding storage type {dtype!r}; valid types: {', '.join(DTYPES)}")
        self.path, self.grid, self.z_dim, self.dtype = path, grid, z_dim, np.dtype(dtype)
        self.valid = np.asarray(valid, bool).reshape(grid.n_rows, grid.n_cols)
        self.fraction = (self.valid if fraction is None else np.asarray(fraction)).astype(np.float32).reshape(
            grid.n_rows, grid.n_cols)
        self.rows, self.cols = chunk_tiles(grid.n_rows, grid.n_cols, z_dim * self.dtype.itemsize)
        write_group(path, {"landtaxa": "embeddings of one date", **(attrs or {})})
        dims_attrs = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
        self.array = ZArray.create(path / "embedding", (grid.n_rows, grid.n_cols, z_dim),
                                   (self.rows, self.cols, z_dim), self.dtype, ["y", "x", "feature"],
                                   {**dims_attrs, "long_name": "tile embedding"}, fill="NaN")
        # valid tiles still to come per chunk; the chunks begun, and the tiles put
        self.todo = np.add.reduceat(np.add.reduceat(self.valid.astype(np.int64), np.arange(0, grid.n_rows, self.rows),
                                                    axis=0), np.arange(0, grid.n_cols, self.cols), axis=1)
        self.open: dict[tuple[int, int], np.ndarray] = {}
        self.written = np.zeros(self.todo.shape, bool)
        self.put_tiles = np.zeros(grid.n_tiles, bool)
        self.sums = np.zeros((2, z_dim), np.float64)  # sum of x, sum of x * x over the valid tiles put
        self.count = 0

    def put(self, tile_ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Embeddings (n, D) of ``tile_ids``, each tile once, in any order (a tile whose chunk was already written,
        i.e. put after every valid tile of its chunk, is refused)."""
        tile_ids = np.asarray(tile_ids, np.int64)
        if len(tile_ids) == 0:
            return
        if self.put_tiles[tile_ids].any() or len(np.unique(tile_ids)) < len(tile_ids):
            raise ValueError(f"{self.path}: a tile was put twice")
        self.put_tiles[tile_ids] = True
        ok = self.valid.reshape(-1)[tile_ids]
        if ok.any():  # the values as stored (through the buffer's float32, then e.g. float16's rounding)
            with np.errstate(over="ignore"):  # beyond float16's range: refused when the chunk is written
                x = np.asarray(embeddings[ok], np.float32).astype(self.dtype).astype(np.float64)
            self.sums[0] += x.sum(axis=0)
            self.sums[1] += np.einsum("nd,nd->d", x, x)
            self.count += int(ok.sum())
        rows, cols = np.divmod(tile_ids, self.grid.n_cols)
        chunk_r, chunk_c = rows // self.rows, cols // self.cols
        for cr, cc in sorted(set(zip(chunk_r.tolist(), chunk_c.tolist(), strict=True))):
            if self.written[cr, cc]:
                raise ValueError(f"{self.path}: a tile of chunk ({cr}, {cc}) came after the chunk was complete")
            sel = (chunk_r == cr) & (chunk_c == cc)
            buffer = self.open.get((cr, cc))
            if buffer is None:
                buffer = self.open[cr, cc] = np.full((self.rows, self.cols, self.z_dim), np.nan, np.float32)
            buffer[rows[sel] - cr * self.rows, cols[sel] - cc * self.cols] = embeddings[sel]
            self.todo[cr, cc] -= int(ok[sel].sum())
            if self.todo[cr, cc] == 0:
                self._write(cr, cc)

    def _write(self, cr: int, cc: int) -> None:
        """Write one chunk (cut at the grid's edge) and forget it."""
        g, r0, c0 = self.grid, cr * self.rows, cc * self.cols
        block = self.open.pop((cr, cc))[: min(self.rows, g.n_rows - r0), : min(self.cols, g.n_cols - c0)]
        if self.dtype == np.float16 and np.nanmax(np.abs(block), initial=0.0) > FLOAT16_MAX:
            raise ValueError(f"{self.path}: embedding values beyond float16's range (|x| > {FLOAT16_MAX:g}); "
                             "store the embeddings as float32 (config key embed.dtype)")
        self.array.write_chunk((cr, cc, 0), block)
        self.written[cr, cc] = True

    def close(self) -> None:
        """Write the chunks begun and left incomplete, the validity, the moments' sums and the coordinates."""
        for cr, cc in sorted(self.open):
            self._write(cr, cc)
        var = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
        write_array(self.path / "valid", self.valid, ["y", "x"], chunks=(self.rows, self.cols),
                    attrs={**var, "long_name": "tile valid on the date"})
        write_array(self.path / "fraction", self.fraction, ["y", "x"], chunks=(self.rows, self.cols),
                    attrs={**var, "long_name": "fraction of the tile's pixels valid on the date"})
        write_array(self.path / "moments", self.sums, ["moment", "feature"],
                    attrs={"count": self.count, "long_name": "sum (row 0) and sum of squares (row 1) of every "
                           "feature over the count valid tiles, as stored"})
        write_coordinates(self.path, self.grid, self.z_dim)
        consolidate(self.path)


@contextlib.contextmanager
def embedding_store(path: str | os.PathLike, grid, z_dim: int, valid: np.ndarray, dtype: str = "float32",
                    attrs: dict | None = None, fraction: np.ndarray | None = None) -> Iterator[EmbeddingWriter]:
    """An :class:`EmbeddingWriter` on a temporary store that becomes ``path`` when the block succeeds."""
    with atomic_dir(path) as tmp:
        writer = EmbeddingWriter(tmp, grid, z_dim, valid, dtype, attrs, fraction)
        yield writer
        writer.close()


def read_embeddings(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """One date's store in memory (small regions): ``embeddings`` (n_tiles, D) float32, NaN where not
    embedded, ``valid`` and ``fraction`` (n_tiles,), in tile order."""
    emb = ZArray(Path(path) / "embedding").read()
    return {"embeddings": emb.reshape(-1, emb.shape[-1]).astype(np.float32),
            "valid": ZArray(Path(path) / "valid").read().reshape(-1),
            "fraction": ZArray(Path(path) / "fraction").read().reshape(-1)}


def read_valid(path: str | os.PathLike) -> np.ndarray:
    """(n_tiles,) bool: the tiles embedded in one date's store."""
    return ZArray(Path(path) / "valid").read().reshape(-1)


def read_moments(path: str | os.PathLike) -> tuple[int, np.ndarray] | None:
    """(count, (2, D) float64 sums of x and x * x) over the valid tiles of one date's store, or None for a store
    written before the embedding jobs kept them."""
    p = Path(path) / "moments"
    if not (p / ".zarray").exists():
        return None
    arr = ZArray(p)
    return int(arr.attrs["count"]), arr.read()


# --------------------------------------------------------------------------- the cube of all dates


def write_cube(path: str | os.PathLike, dates_stores: Sequence[str | os.PathLike], dates: Sequence[str],
               attrs: dict | None = None) -> None:
    """The cube (time, y, x, feature) of per-date stores: links to their arrays, no copy of the data."""
    if not dates_stores:
        raise ValueError("a cube needs at least one date")
    first = ZArray(Path(dates_stores[0]) / "embedding")
    valid0 = ZArray(Path(dates_stores[0]) / "valid")
    for store in dates_stores[1:]:
        other = ZArray(Path(store) / "embedding")
        if (other.shape, other.chunks, other.dtype) != (first.shape, first.chunks, first.dtype):
            raise ValueError(f"{store}: embedding array {other.shape} {other.dtype} in chunks {other.chunks} differs "
                             f"from {dates_stores[0]}'s {first.shape} {first.dtype} in chunks {first.chunks}")
    final = Path(path)
    with atomic_dir(final) as tmp:
        write_group(tmp, {"landtaxa": "embedding cube: every tile's embedding on every date",
                          "dates": [str(d) for d in dates], **(attrs or {})})
        var = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
        ZArray.create(tmp / "embedding", (len(dates), *first.shape), (1, *first.chunks), first.dtype,
                      ["time", "y", "x", "feature"], {**var, "long_name": "tile embedding"}, fill="NaN")
        for name, text in (("valid", "tile valid on the date"),
                           ("fraction", "fraction of the tile's pixels valid on the date")):
            ZArray.create(tmp / name, (len(dates), *valid0.shape), (1, *valid0.chunks),
                          ZArray(Path(dates_stores[0]) / name).dtype, ["time", "y", "x"], {**var, "long_name": text})
        for t, store in enumerate(dates_stores):
            for name in ("embedding", "valid", "fraction"):
                target = os.path.relpath(Path(store).absolute() / name, (final / name).absolute())
                os.symlink(target, tmp / name / str(t), target_is_directory=True)
        write_array(tmp / "time", np.array([days(d) for d in dates], np.int64), ["time"],
                    attrs={"standard_name": "time", "units": "days since 1970-01-01",
                           "calendar": "proleptic_gregorian"})
        _copy_coordinates(Path(dates_stores[0]), tmp)
        consolidate(tmp)
