"""The demo region's spec: its size, granules, dates and file names, known before anything is written.

:class:`DemoSpec` describes the synthetic region (:mod:`landtaxa.inputs.demo.scene` writes it):
its pixels, CRS and granules, its dates, and the path of every image and of the ground truth.
The workflow plans from this module alone, at parse time, without generating anything (and
without the scene's dependencies); :meth:`DemoSpec.region` is the region the grid will cover.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass
from pathlib import Path

from rasterio.crs import CRS
from rasterio.transform import Affine

from landtaxa.inputs.grid import Region
from landtaxa.params import DemoParams

CLASS_NAMES: dict[int, str] = {
    1: "water",
    2: "evergreen_forest",
    3: "deciduous_forest",
    4: "cropland",
    5: "urban",
    6: "mountain_snow",
    7: "clearcut",
}

#: Band names in file order; a spec with ``bands=k`` writes the first ``k``.
BAND_NAMES: tuple[str, ...] = ("B", "G", "R", "NIR", "SWIR1", "SWIR2")

NODATA = 0
TRUTH_NODATA = 255
SCALE = 10000.0


@dataclass(frozen=True)
class DemoSpec:
    """Parameters of the synthetic demo region."""

    size: int = 512  # side of the square region in pixels
    n_dates: int = 8  # number of dates, spread evenly across one year
    year: int = 2023
    granules: int = 2  # granules per side: granules x granules overlapping granules
    overlap: float = 0.1  # fraction of a granule's side shared with its neighbour
    pixel_size: float = 20.0  # metres
    crs: str = "EPSG:32630"  # projected CRS (UTM 30N)
    origin: tuple[float, float] = (500000.0, 4750000.0)  # (x, y) of the upper-left corner
    bands: int = 4  # B, G, R, NIR as uint16 reflectance x 10000 (nodata 0)
    change_date: int | None = None  # index of the date of the clear-cut; None -> n_dates // 2
    seed: int = 0

    def region(self) -> Region:
        """The region the grid covers: the whole square, its bands written as uint16."""
        x0, y0 = self.origin
        side = self.size * self.pixel_size
        return Region(CRS.from_user_input(self.crs), (x0, y0 - side, x0 + side, y0), self.pixel_size, self.bands, 2)


# --------------------------------------------------------------------------- geometry


def check(spec: DemoSpec) -> None:
    """Raise ValueError when ``spec`` cannot be generated."""
    if spec.size < 16:
        raise ValueError(f"size must be >= 16, got {spec.size}")
    days = 366 if is_leap(spec.year) else 365
    if not 1 <= spec.n_dates <= days:
        raise ValueError(f"n_dates must be in 1..{days}, got {spec.n_dates}")
    if spec.granules < 1:
        raise ValueError(f"granules must be >= 1, got {spec.granules}")
    if not 0.0 <= spec.overlap < 0.5:
        raise ValueError(f"overlap must be in [0, 0.5), got {spec.overlap}")
    if spec.pixel_size <= 0:
        raise ValueError(f"pixel_size must be > 0, got {spec.pixel_size}")
    if not 1 <= spec.bands <= len(BAND_NAMES):
        raise ValueError(f"bands must be in 1..{len(BAND_NAMES)}, got {spec.bands}")
    if spec.change_date is not None and not 0 <= spec.change_date < spec.n_dates:
        raise ValueError(f"change_date must be in 0..{spec.n_dates - 1}, got {spec.change_date}")
    if spec.seed < 0:
        raise ValueError(f"seed must be >= 0, got {spec.seed}")
    if granule_side(spec) < 16:
        raise ValueError("granules are smaller than 16 px; use a larger size or fewer granules")


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def granule_side(spec: DemoSpec) -> int:
    n = spec.granules
    return min(spec.size, math.ceil(spec.size / (n - (n - 1) * spec.overlap)))


def granule_offsets(spec: DemoSpec) -> list[int]:
    """Pixel offsets of the granules along one axis (the same for rows and columns)."""
    g = granule_side(spec)
    n = spec.granules
    if n == 1:
        return [0]
    step = g - round(spec.overlap * g)
    offsets = [min(i * step, spec.size - g) for i in range(n)]
    offsets[-1] = spec.size - g  # the last granule is shifted so that the union is the region
    return offsets


def _granule_label(i: int, n: int) -> str:
    return f"{i}" if n <= 10 else f"{i:02d}"


def granule_names(spec: DemoSpec) -> list[str]:
    """Granule names ``g{row}{col}`` in row-major order, e.g. ``['g00', 'g01', 'g10', 'g11']``."""
    n = spec.granules
    return [f"g{_granule_label(r, n)}{_granule_label(c, n)}" for r in range(n) for c in range(n)]


def granule_windows(spec: DemoSpec) -> list[tuple[str, int, int, int]]:
    """``(name, row_off, col_off, side)`` of every granule in the region's pixel grid."""
    g = granule_side(spec)
    offs = granule_offsets(spec)
    names = iter(granule_names(spec))
    return [(next(names), r, c, g) for r in offs for c in offs]


def region_transform(spec: DemoSpec) -> Affine:
    x0, y0 = spec.origin
    return Affine(spec.pixel_size, 0.0, x0, 0.0, -spec.pixel_size, y0)


def window_transform(spec: DemoSpec, row_off: int, col_off: int) -> Affine:
    x0, y0 = spec.origin
    px = spec.pixel_size
    return Affine(px, 0.0, x0 + col_off * px, 0.0, -px, y0 - row_off * px)


def demo_dates(spec: DemoSpec) -> list[str]:
    """Acquisition dates ``'YYYY-MM-DD'``, evenly spread across ``spec.year`` (sorted)."""
    days = 366 if is_leap(spec.year) else 365
    start = dt.date(spec.year, 1, 1)
    out = []
    for i in range(spec.n_dates):
        offset = min(days - 1, int(math.floor((i + 0.5) * days / spec.n_dates)))
        out.append((start + dt.timedelta(days=offset)).isoformat())
    return out


def day_of_year(date: str) -> int:
    return dt.date.fromisoformat(date).timetuple().tm_yday


def change_index(spec: DemoSpec) -> int:
    return spec.n_dates // 2 if spec.change_date is None else spec.change_date


def demo_inventory(spec: DemoSpec, out_dir: str | os.PathLike[str]) -> list[tuple[str, str, Path]]:
    """``(date, granule, path)`` of every image the scene writes, sorted by date, granule.

    Computed from the spec alone, without generating anything.
    """
    check(spec)
    images = Path(out_dir) / "images"
    return [(date, gran, images / f"{date}_{gran}.tif") for date in demo_dates(spec) for gran in granule_names(spec)]


def truth_path(out_dir: str | os.PathLike[str]) -> Path:
    """Path of the ground-truth class map the scene writes."""
    return Path(out_dir) / "truth.tif"


def spec_of(params: DemoParams) -> DemoSpec:
    """The demo region the config describes (the ``demo`` section; its own seed)."""
    return DemoSpec(size=params.size, n_dates=params.n_dates, year=params.year, granules=params.granules,
                    overlap=params.overlap, pixel_size=params.pixel_size, bands=params.bands,
                    change_date=params.change_date, seed=params.seed)
