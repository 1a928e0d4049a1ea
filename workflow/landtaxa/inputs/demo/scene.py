"""Synthetic demo region with a known ground truth.

The demo looks to the method like a real multi-granule satellite time series: a square
region in a projected CRS is covered by ``granules x granules`` overlapping granules (as on
the Sentinel-2 tiling grid), each written as its own GeoTIFF per date, with 4 bands
(B, G, R, NIR, reflectance x 10000 as uint16, nodata 0).  Underneath lies a map of seven
land kinds laid out as large contiguous zones (``truth.tif``); every kind has its own
spatial texture and its own behaviour over the year:

1. water: dark and smooth with faint ripples, very low NIR, some turbidity in spring;
2. evergreen forest: dark green crown texture, stable all year;
3. deciduous forest: crown texture, green in summer, brown/grey and low NIR when leaf-off;
4. cropland: rectangular parcels, each with its own sowing / green-up / harvest dates;
5. urban: bright street grid with blocks of roofs, stable, low NIR;
6. mountain_snow: ridged rock and alpine meadow, covered with snow in winter;
7. clearcut: evergreen forest until ``change_date``, bare soil and slash from then on.

On top of the ground signal each date gets a regional haze (on about a third of the
dates) and every granule gets its own sensor noise, so that overlapping granules carry
the same ground signal but independent noise.  Two outer corners of the region carry a
nodata wedge, as at the edge of an orbit swath.

Everything is deterministic from ``DemoSpec.seed``: every random stream is seeded from
``(seed, stream, indices...)``, so the output does not depend on generation order.
Only numpy, scipy.ndimage and rasterio are used; the default region (512 x 512 px,
8 dates, 2 x 2 granules) is generated in a few seconds.

:mod:`landtaxa.inputs.demo.spec` knows the files before they exist (the workflow needs it);
:func:`make_demo` writes them and :func:`demo_step` is the workflow's step.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from scipy import ndimage

from landtaxa.inputs.demo.spec import (
    BAND_NAMES,
    CLASS_NAMES,
    NODATA,
    SCALE,
    TRUTH_NODATA,
    DemoSpec,
    change_index,
    check,
    day_of_year,
    demo_dates,
    demo_inventory,
    granule_names,
    granule_offsets,
    granule_side,
    granule_windows,
    region_transform,
    spec_of,
    truth_path,
    window_transform,
)
from landtaxa.params import DemoParams
from landtaxa.storage import get_logger

log = get_logger()

WATER, EVERGREEN, DECIDUOUS, CROPLAND, URBAN, MOUNTAIN, CLEARCUT = range(1, 8)

# Random stream identifiers (the second element of every seed sequence).
_S_LAYOUT = 1
_S_TEXTURE = 2
_S_DATE = 3
_S_HAZE = 4
_S_NOISE = 5
_S_WEDGE = 6

# Surface reflectance spectra (B, G, R, NIR, SWIR1, SWIR2).
_SPECTRA: dict[str, tuple[float, ...]] = {
    "water": (0.060, 0.052, 0.032, 0.014, 0.008, 0.005),
    "turbid": (0.012, 0.030, 0.030, 0.010, 0.003, 0.002),  # added at turbidity 1
    "evergreen": (0.022, 0.040, 0.021, 0.270, 0.130, 0.060),
    "leaf_on": (0.028, 0.068, 0.030, 0.420, 0.200, 0.085),
    "leaf_off": (0.058, 0.072, 0.088, 0.175, 0.255, 0.175),
    "soil": (0.078, 0.102, 0.140, 0.210, 0.300, 0.245),
    "crop": (0.032, 0.080, 0.038, 0.460, 0.220, 0.100),
    "straw": (0.130, 0.170, 0.215, 0.290, 0.370, 0.290),
    "street": (0.185, 0.195, 0.205, 0.225, 0.265, 0.245),
    "roof_tile": (0.075, 0.085, 0.175, 0.210, 0.260, 0.220),
    "roof_concrete": (0.150, 0.160, 0.170, 0.200, 0.250, 0.230),
    "roof_dark": (0.050, 0.055, 0.060, 0.080, 0.100, 0.090),
    "park": (0.030, 0.060, 0.035, 0.330, 0.170, 0.080),
    "rock": (0.105, 0.115, 0.125, 0.170, 0.230, 0.200),
    "meadow": (0.035, 0.072, 0.045, 0.300, 0.200, 0.100),
    "snow": (0.850, 0.830, 0.800, 0.650, 0.080, 0.050),
    "slash": (0.072, 0.082, 0.112, 0.165, 0.285, 0.235),
    "haze": (1.000, 0.750, 0.500, 0.250, 0.100, 0.050),  # haze additive weight per band
}


# --------------------------------------------------------------------------- randomness


def _rng(spec: DemoSpec, stream: int, *index: int) -> np.random.Generator:
    """Independent generator for one stream and index, whatever the generation order."""
    return np.random.default_rng([spec.seed, stream, *index])


def _field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Gaussian-correlated noise (correlation length ``scale`` px), zero mean, unit std."""
    white = rng.standard_normal(shape, dtype=np.float32)
    spectrum = np.fft.rfft2(white)
    ky = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    spectrum *= np.exp(-2.0 * (np.pi * scale) ** 2 * (kx**2 + ky**2))
    out = np.fft.irfft2(spectrum, s=shape).astype(np.float32)
    out -= out.mean()
    out /= out.std() + 1e-12
    return out


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))


def _spectrum(name: str, bands: int) -> np.ndarray:
    return np.asarray(_SPECTRA[name][:bands], dtype=np.float32)


# --------------------------------------------------------------------------- nodata


def _wedge_masks(spec: DemoSpec) -> dict[str, np.ndarray]:
    """Nodata wedge (True = nodata) of each granule that has one, in granule pixels.

    The top-left granule loses a triangle in the region's top-left corner and the
    bottom-right granule one in the region's bottom-right corner.  The legs are 25-35 %
    of the granule side and never reach another granule, so the corners stay uncovered.
    """
    g = granule_side(spec)
    offs = granule_offsets(spec)
    reach = offs[1] if len(offs) > 1 else g  # pixels covered by this granule only
    rng = _rng(spec, _S_WEDGE)
    legs = [max(2, min(reach, round(g * rng.uniform(0.25, 0.35)))) for _ in range(2)]
    rr, cc = np.mgrid[0:g, 0:g]
    top_left = (rr + cc) < legs[0]
    bottom_right = ((g - 1 - rr) + (g - 1 - cc)) < legs[1]
    names = granule_names(spec)
    if len(names) == 1:
        return {names[0]: top_left | bottom_right}
    return {names[0]: top_left, names[-1]: bottom_right}


def _coverage(spec: DemoSpec, wedges: dict[str, np.ndarray]) -> np.ndarray:
    """Boolean region mask of pixels that at least one granule has data for."""
    valid = np.zeros((spec.size, spec.size), dtype=bool)
    for name, r, c, g in granule_windows(spec):
        ok = ~wedges[name] if name in wedges else np.ones((g, g), dtype=bool)
        valid[r : r + g, c : c + g] |= ok
    return valid


# --------------------------------------------------------------------------- layout


def _layout(spec: DemoSpec, valid: np.ndarray) -> np.ndarray:
    """Class map 1..7 of the region: a domain-warped Voronoi partition plus a clear-cut."""
    n = spec.size
    rng = _rng(spec, _S_LAYOUT)
    n_seeds = 10
    # Best-candidate sampling: well-spread seeds, hence cells of similar (large) size.
    seeds = [rng.uniform(0, n, 2)]
    for _ in range(n_seeds - 1):
        cand = rng.uniform(0, n, (24, 2))
        d = np.min(np.linalg.norm(cand[:, None, :] - np.asarray(seeds)[None], axis=2), axis=1)
        seeds.append(cand[int(np.argmax(d))])
    pts = np.asarray(seeds, dtype=np.float32)

    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    wy = _field(rng, (n, n), n / 8) * (n / 13) + _field(rng, (n, n), n / 40) * (n / 70)
    wx = _field(rng, (n, n), n / 8) * (n / 13) + _field(rng, (n, n), n / 40) * (n / 70)
    yw, xw = yy + wy, xx + wx
    del wy, wx  # region-sized arrays are freed as soon as they are used: a 65,536-tile demo stays near 1 GB
    best = np.full((n, n), np.inf, dtype=np.float32)
    cell = np.zeros((n, n), dtype=np.int16)
    for k, (py, px) in enumerate(pts):
        d2 = (yw - py) ** 2 + (xw - px) ** 2
        closer = d2 < best
        best[closer] = d2[closer]
        cell[closer] = k
    del yw, xw, best, d2, closer

    # Every base class gets one of the six largest cells; the others get random classes.
    areas = np.bincount(cell[valid].ravel(), minlength=n_seeds)
    order = np.argsort(-areas, kind="stable")
    cls_of_cell = np.zeros(n_seeds, dtype=np.uint8)
    base = [WATER, EVERGREEN, DECIDUOUS, CROPLAND, URBAN, MOUNTAIN]
    cls_of_cell[order[:6]] = rng.permutation(base)
    cls_of_cell[order[6:]] = rng.choice(base, size=n_seeds - 6)
    truth = cls_of_cell[cell]
    del cell
    min_area = max(16, n * n // 400)
    truth = _remove_specks(truth, min_area, valid)

    # The clear-cut: a compact, slightly irregular rectangle inside the evergreen forest.
    forest = np.pad((truth == EVERGREEN) & valid, 1)  # the region's edge counts as outside
    inside = ndimage.distance_transform_edt(forest)[1:-1, 1:-1]
    cy, cx = np.unravel_index(int(np.argmax(inside)), inside.shape)
    del forest, inside
    half_a, half_b = 0.085 * n, 0.065 * n
    angle = rng.uniform(0, np.pi)
    wobble = _field(rng, (n, n), max(3.0, n / 30)) * 0.08
    u = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / half_a
    v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / half_b
    patch = (u**4 + v**4) < (1.0 + wobble)
    del u, v, wobble, xx, yy
    truth[patch] = CLEARCUT
    return _remove_specks(truth, min_area, valid)


def _remove_specks(labels: np.ndarray, min_area: int, valid: np.ndarray) -> np.ndarray:
    """Relabel components (within ``valid``) smaller than ``min_area`` after their nearest
    big neighbour; pixels outside ``valid`` get the nearest valid label too (they are
    masked later), so that zones cut by the nodata wedges leave no specks behind.
    """
    small = np.zeros(labels.shape, dtype=bool)
    for c in np.unique(labels[valid]):
        comp, n_comp = ndimage.label((labels == c) & valid)
        if n_comp <= 1:
            continue
        sizes = np.bincount(comp.ravel())
        tiny = sizes < min_area
        tiny[0] = False
        small |= tiny[comp]
    fill = small | ~valid
    if not fill.any() or fill.all():
        return labels
    _, (iy, ix) = ndimage.distance_transform_edt(fill, return_indices=True)
    return labels[iy, ix]


# --------------------------------------------------------------------------- scene


class _Scene:
    """Static part of the demo: class map and per-class, per-pixel textures."""

    def __init__(self, spec: DemoSpec) -> None:
        check(spec)
        self.spec = spec
        n = spec.size
        self.wedges = _wedge_masks(spec)
        self.valid = _coverage(spec, self.wedges)
        self.truth = _layout(spec, self.valid)
        self.dates = demo_dates(spec)
        self.change = change_index(spec)
        flat = self.truth.ravel()
        self.idx = {c: np.flatnonzero(flat == c) for c in CLASS_NAMES}
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)

        def tex(k: int, scale: float) -> np.ndarray:
            return _field(_rng(spec, _S_TEXTURE, k), (n, n), scale).ravel()

        trng = _rng(spec, _S_TEXTURE, 0)

        # Water: sediment plume field and ripple direction.
        iw = self.idx[WATER]
        self.sediment = tex(1, n / 10)[iw]
        theta = trng.uniform(0, np.pi)
        self.ripple_u = (xx.ravel()[iw] * np.cos(theta) + yy.ravel()[iw] * np.sin(theta)) / 7.0

        # Forests: crowns a few px across; the clear-cut shares the evergreen canopy.
        crowns = np.tanh(tex(2, 1.3))
        self.crowns_ev = crowns[self.idx[EVERGREEN]]
        self.crowns_cc = crowns[self.idx[CLEARCUT]]
        self.crowns_de = np.tanh(tex(3, 1.7))[self.idx[DECIDUOUS]]
        self.slash = tex(4, 0.8)[self.idx[CLEARCUT]]
        del crowns

        # Cropland parcels, each with its own calendar.
        parcels = _parcels(trng, n)
        n_par = int(parcels.max()) + 1
        ic = self.idx[CROPLAND]
        pid = parcels.ravel()[ic]
        sow = trng.uniform(60, 190, n_par).astype(np.float32)
        harvest = sow + trng.uniform(70, 120, n_par).astype(np.float32)
        winter = trng.random(n_par) < 0.3
        sow[winter] = trng.uniform(40, 90, int(winter.sum()))
        harvest[winter] = trng.uniform(175, 205, int(winter.sum()))
        self.sow, self.harvest = sow[pid], harvest[pid]
        self.winter_cover = np.where(winter, 0.3, 0.0).astype(np.float32)[pid]
        self.parcel_gain = (1.0 + 0.07 * trng.standard_normal(n_par)).astype(np.float32)[pid]
        vertical = trng.random(n_par) < 0.5
        period = trng.uniform(3.0, 5.0, n_par).astype(np.float32)
        coord = np.where(vertical[pid], xx.ravel()[ic], yy.ravel()[ic])
        self.tillage = 1.0 + 0.04 * np.sin(2 * np.pi * coord / period[pid])
        edge = np.zeros((n, n), dtype=bool)
        edge[:, 1:] |= parcels[:, 1:] != parcels[:, :-1]
        edge[1:, :] |= parcels[1:, :] != parcels[:-1, :]
        self.tillage = np.where(edge.ravel()[ic], 0.85, self.tillage).astype(np.float32)
        del parcels, edge, coord, pid

        # Urban: a street grid with roofs of three kinds and a few parks.
        iu = self.idx[URBAN]
        pitch = int(trng.integers(8, 13))
        ang = trng.uniform(-0.25, 0.25)
        u = xx.ravel()[iu] * np.cos(ang) + yy.ravel()[iu] * np.sin(ang)
        v = -xx.ravel()[iu] * np.sin(ang) + yy.ravel()[iu] * np.cos(ang)
        street = (np.mod(u, pitch) < 2.0) | (np.mod(v, pitch) < 2.0)
        bu = np.floor_divide(u, pitch).astype(np.int64) % 97
        bv = np.floor_divide(v, pitch).astype(np.int64) % 97
        kinds = trng.choice(4, size=(97, 97), p=[0.35, 0.35, 0.2, 0.1])
        gain = (1.0 + 0.08 * trng.standard_normal((97, 97))).astype(np.float32)
        b = spec.bands
        table = np.stack([_spectrum(k, b) for k in ("roof_tile", "roof_concrete", "roof_dark", "park")])
        refl = table[kinds[bu, bv]] * gain[bu, bv][:, None]
        refl[street] = _spectrum("street", b)
        self.urban = refl * (1.0 + 0.05 * tex(5, 0.7)[iu])[:, None]
        del u, v, street, bu, bv, refl

        # Mountains: ridged relief, hill shading and elevation-driven snow line.
        im = self.idx[MOUNTAIN]
        # (each field from its own generator: drawn in this order, the fewest region-sized arrays live at once)
        ang = trng.uniform(0, np.pi)
        relief = _field(trng, (n, n), n / 6)
        waves = np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / 40.0)
        del xx, yy
        ridges = 1.0 - np.abs(_field(_rng(spec, _S_TEXTURE, 6), (n, n), 9.0))
        fine = 1.0 - np.abs(_field(_rng(spec, _S_TEXTURE, 7), (n, n), 3.5))
        elev = 0.55 * ridges + 0.2 * fine + 0.25 * waves + 0.35 * relief
        del ridges, fine, waves, relief
        gy, gx = np.gradient(elev)
        shade = np.tanh(-3.0 * (gx + gy)).ravel()[im]
        elev = elev.ravel()[im]
        if elev.size:
            lo, hi = np.percentile(elev, [1, 99])
            elev = np.clip((elev - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
        self.elev = elev.astype(np.float32)
        self.shade = (1.0 + 0.25 * shade).astype(np.float32)
        self.meadow = np.clip((0.55 - self.elev) / 0.25, 0.0, 1.0)

        # Haze on about a third of the dates.
        n_haze = round(spec.n_dates / 3)
        hrng = _rng(spec, _S_HAZE)
        self.haze_dates = set(hrng.choice(spec.n_dates, size=n_haze, replace=False).tolist())

    # ------------------------------------------------------------------ per date

    def ground(self, d: int) -> np.ndarray:
        """Top-of-canopy reflectance (bands, size, size), float32, haze included."""
        spec = self.spec
        n, b = spec.size, spec.bands
        doy = float(day_of_year(self.dates[d]))
        summer = 0.5 - 0.5 * math.cos(2 * math.pi * (doy - 15.0) / 365.0)
        drng = _rng(spec, _S_DATE, d)
        out = np.empty((n * n, b), dtype=np.float32)
        s = {k: _spectrum(k, b) for k in _SPECTRA}

        # 1 water
        turb = math.exp(-(((doy - 100.0) / 45.0) ** 2))
        ripple = 1.0 + 0.04 * np.sin(2 * np.pi * self.ripple_u + drng.uniform(0, 2 * np.pi))
        plume = turb * np.clip(1.0 + 0.6 * self.sediment, 0.0, None)
        out[self.idx[WATER]] = (s["water"] + plume[:, None] * s["turbid"]) * ripple[:, None]

        # 2 evergreen forest
        ever = s["evergreen"] * (1.0 + 0.05 * summer)
        out[self.idx[EVERGREEN]] = ever * (1.0 + 0.25 * self.crowns_ev)[:, None]

        # 3 deciduous forest
        leaf = float(_sigmoid((doy - 125.0) / 9.0) - _sigmoid((doy - 295.0) / 9.0))
        dec = s["leaf_off"] + leaf * (s["leaf_on"] - s["leaf_off"])
        out[self.idx[DECIDUOUS]] = dec * (1.0 + (0.12 + 0.13 * leaf) * self.crowns_de)[:, None]

        # 4 cropland
        # winter crops: emerged cover from autumn sowing until the spring green-up
        green = self.winter_cover * (_sigmoid((60.0 - doy) / 10.0) + _sigmoid((doy - 300.0) / 10.0))
        green = np.maximum(green, _sigmoid((doy - self.sow) / 8.0))
        green = green * (1.0 - _sigmoid((doy - self.harvest) / 4.0))
        after = np.maximum(doy - self.harvest, 0.0)
        straw = (1.0 - green) * _sigmoid((doy - self.harvest) / 4.0) * np.exp(-after / 70.0)
        soil = 1.0 - green - straw
        crop = green[:, None] * s["crop"] + straw[:, None] * s["straw"] + soil[:, None] * s["soil"]
        out[self.idx[CROPLAND]] = crop * (self.parcel_gain * self.tillage)[:, None]

        # 5 urban
        out[self.idx[URBAN]] = self.urban

        # 6 mountain with snow
        snowline = 0.5 + 0.6 * math.cos(2 * math.pi * (doy - 205.0) / 365.0)
        snow = np.clip((self.elev - snowline) / 0.08, 0.0, 1.0)[:, None]
        bare = s["rock"] + (self.meadow * summer)[:, None] * (s["meadow"] - s["rock"])
        bare = bare * self.shade[:, None]
        snowy = s["snow"] * (0.9 + 0.4 * (self.shade[:, None] - 1.0))
        out[self.idx[MOUNTAIN]] = snow * snowy + (1.0 - snow) * bare

        # 7 clear-cut
        if d < self.change:
            out[self.idx[CLEARCUT]] = ever * (1.0 + 0.25 * self.crowns_cc)[:, None]
        else:
            out[self.idx[CLEARCUT]] = s["slash"] * (1.0 + 0.18 * self.slash)[:, None]

        img = out.T.reshape(b, n, n)
        if d in self.haze_dates:
            hrng = _rng(spec, _S_HAZE, d)
            amp = hrng.uniform(0.02, 0.05)
            haze = amp * np.clip(0.7 + 0.5 * _field(hrng, (n, n), n / 5), 0.0, None)
            img *= 1.0 - 0.5 * haze
            img += s["haze"][:, None, None] * haze
        return img

    def granule(self, ground: np.ndarray, d: int, gi: int) -> np.ndarray:
        """uint16 image of granule number ``gi`` on date ``d``, independent sensor noise."""
        name, r, c, g = granule_windows(self.spec)[gi]
        part = ground[:, r : r + g, c : c + g]
        rng = _rng(self.spec, _S_NOISE, d, gi)
        mult = rng.standard_normal(part.shape, dtype=np.float32)
        add = rng.standard_normal(part.shape, dtype=np.float32)
        val = part * (1.0 + 0.03 * mult) + 0.0015 * add
        img = np.clip(np.rint(val * SCALE), 1, SCALE).astype(np.uint16)
        if name in self.wedges:
            img[:, self.wedges[name]] = NODATA
        return img

    def truth_map(self) -> np.ndarray:
        return np.where(self.valid, self.truth, TRUTH_NODATA).astype(np.uint8)


def _parcels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Map of rectangular parcel ids: bands of rows, each split into parcels of its own."""
    ids = np.zeros((n, n), dtype=np.int32)
    xs = np.arange(n)
    y, next_id = 0, 0
    while y < n:
        h = int(rng.integers(16, 41))
        widths = rng.integers(16, 49, size=n // 16 + 2)
        edges = np.cumsum(widths) - int(rng.integers(0, 16))
        cols = np.searchsorted(edges, xs, side="right")
        ids[y : y + h] = next_id + cols[None, :]
        next_id += int(cols.max()) + 1
        y += h
    return ids


# --------------------------------------------------------------------------- writing


def _block(side: int) -> int:
    return min(256, 16 * math.ceil(side / 16))


def _write_atomic(
    path: Path, data: np.ndarray, profile: dict, descriptions: Sequence[str], tags: dict[str, str]
) -> None:
    """Write a GeoTIFF to a temporary name in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, desc in enumerate(descriptions, start=1):
                dst.set_band_description(i, desc)
            dst.update_tags(**tags)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _profile(spec: DemoSpec, side: int, count: int, dtype: str, nodata: int, transform: Affine) -> dict:
    block = _block(side)
    return {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": count,
        "dtype": dtype,
        "crs": spec.crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "predictor": 2,
    }


def make_demo(
    spec: DemoSpec,
    out_dir: str | os.PathLike[str],
    progress: Callable[[int, int, str], None] | None = None,
) -> list[tuple[str, str, Path]]:
    """Generate the demo region into ``out_dir`` and return :func:`demo_inventory`.

    Writes ``out_dir/images/{date}_{granule}.tif`` for every date and granule and
    ``out_dir/truth.tif`` (uint8 class map 1..7, nodata 255).  ``progress(i, n, date)``
    is called after each date is written.
    """
    scene = _Scene(spec)
    inventory = demo_inventory(spec, out_dir)
    windows = granule_windows(spec)
    descriptions = BAND_NAMES[: spec.bands]
    by_key = {(date, gran): path for date, gran, path in inventory}
    for d, date in enumerate(scene.dates):
        ground = scene.ground(d)
        for gi, (name, r, c, g) in enumerate(windows):
            img = scene.granule(ground, d, gi)
            profile = _profile(spec, g, spec.bands, "uint16", NODATA, window_transform(spec, r, c))
            tags = {"DATE": date, "GRANULE": name, "SOURCE": "landtaxa synthetic demo"}
            _write_atomic(by_key[(date, name)], img, profile, descriptions, tags)
        del ground, img  # before the next date's are built
        if progress is not None:
            progress(d + 1, spec.n_dates, date)
    truth_profile = _profile(spec, spec.size, 1, "uint8", TRUTH_NODATA, region_transform(spec))
    class_tags = {f"CLASS_{k}": v for k, v in CLASS_NAMES.items()}
    class_tags["CHANGE_DATE"] = scene.dates[scene.change]
    _write_atomic(truth_path(out_dir), scene.truth_map()[None], truth_profile, ["class"], class_tags)
    return inventory


# --------------------------------------------------------------------------- step


def demo_step(*, out: str, params: DemoParams) -> None:
    """Write the demo's images and truth under ``out`` (progress date by date in the log)."""
    spec = spec_of(params)
    check(spec)

    def report(i: int, n: int, date: str) -> None:
        log.info("demo: date %d/%d %s written", i, n, date)

    inventory = make_demo(spec, out, progress=report)
    log.info("demo: %d images and %s in %s", len(inventory), truth_path(out), out)
