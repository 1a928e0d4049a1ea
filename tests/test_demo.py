"""Tests of the synthetic demo region (landtaxa.inputs.demo: its spec and its scene)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from landtaxa.inputs.demo import scene
from landtaxa.inputs.demo.scene import demo_step, make_demo
from landtaxa.inputs.demo.spec import (
    CLASS_NAMES,
    DemoSpec,
    demo_dates,
    demo_inventory,
    granule_names,
    spec_of,
    truth_path,
)
from landtaxa.params import DemoParams, schema_defaults

SMALL = DemoSpec(size=96, n_dates=4, seed=3)
WATER, EVERGREEN, DECIDUOUS, CROPLAND, URBAN, MOUNTAIN, CLEARCUT = range(1, 8)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("demo_small")
    return out, make_demo(SMALL, out)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _offsets(spec: DemoSpec, src: rasterio.io.DatasetReader) -> tuple[int, int]:
    """(row, col) of a granule's upper-left pixel in the region's grid."""
    x0, y0 = spec.origin
    col = (src.transform.c - x0) / spec.pixel_size
    row = (y0 - src.transform.f) / spec.pixel_size
    assert col == pytest.approx(round(col), abs=1e-9) and row == pytest.approx(round(row), abs=1e-9)
    return round(row), round(col)


def _mosaic(spec: DemoSpec, inventory: list, date: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid granule pixels of one date on the region grid, and their count."""
    acc = np.zeros((spec.bands, spec.size, spec.size))
    count = np.zeros((spec.size, spec.size))
    for d, _, path in inventory:
        if d != date:
            continue
        with rasterio.open(path) as src:
            r, c = _offsets(spec, src)
            img = src.read().astype(float)
        ok = img.all(axis=0)
        acc[:, r : r + img.shape[1], c : c + img.shape[2]] += img * ok
        count[r : r + img.shape[1], c : c + img.shape[2]] += ok
    return acc / np.maximum(count, 1), count


def _class_means(spec: DemoSpec, out: Path, inventory: list) -> np.ndarray:
    """Mean reflectance (date, class 1..7, band) over the truth zones."""
    truth = _read(truth_path(out))[0]
    means = np.zeros((spec.n_dates, 8, spec.bands))
    for i, date in enumerate(demo_dates(spec)):
        mosaic, _ = _mosaic(spec, inventory, date)
        for c in CLASS_NAMES:
            means[i, c] = mosaic[:, truth == c].mean(axis=1)
    return means


# ----------------------------------------------------------------------------- inventory


def test_inventory_lists_exactly_the_written_files(tmp_path: Path) -> None:
    spec = DemoSpec(size=64, n_dates=3, seed=1)
    planned = demo_inventory(spec, tmp_path)
    assert len(planned) == spec.n_dates * spec.granules**2
    assert not any(p.exists() for _, _, p in planned)
    assert planned == sorted(planned)
    for date, gran, path in planned:
        assert path == tmp_path / "images" / f"{date}_{gran}.tif"

    written = make_demo(spec, tmp_path)
    assert written == planned
    on_disk = {p for p in (tmp_path / "images").iterdir()}
    assert on_disk == {p for _, _, p in planned}
    assert truth_path(tmp_path) == tmp_path / "truth.tif"
    assert truth_path(tmp_path).is_file()


@pytest.mark.parametrize("n_dates,year", [(1, 2023), (4, 2023), (8, 2023), (12, 2024), (52, 2021)])
def test_dates_sorted_evenly_spread_in_year(n_dates: int, year: int) -> None:
    dates = demo_dates(DemoSpec(n_dates=n_dates, year=year))
    assert len(dates) == n_dates == len(set(dates))
    assert dates == sorted(dates)
    days = [dt.date.fromisoformat(d) for d in dates]
    assert all(d.year == year for d in days)
    span = (dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days
    gaps = np.diff([d.toordinal() for d in days])
    assert np.all(np.abs(gaps - span / n_dates) <= 1)
    # centred in the year: first date as far from 1 Jan as the last from 31 Dec (+-1 day)
    head = (days[0] - dt.date(year, 1, 1)).days
    tail = (dt.date(year, 12, 31) - days[-1]).days
    assert abs(head - tail) <= 1


def test_granule_names() -> None:
    assert granule_names(DemoSpec(granules=2)) == ["g00", "g01", "g10", "g11"]
    assert granule_names(DemoSpec(granules=1)) == ["g00"]
    assert len(granule_names(DemoSpec(granules=3))) == 9


def test_invalid_spec_is_refused(tmp_path: Path) -> None:
    for bad in (
        DemoSpec(size=8),
        DemoSpec(n_dates=0),
        DemoSpec(n_dates=4, change_date=4),
        DemoSpec(bands=9),
        DemoSpec(overlap=-0.1),
        DemoSpec(seed=-1),
    ):
        with pytest.raises(ValueError):
            demo_inventory(bad, tmp_path)


# ----------------------------------------------------------------------------- granules


@pytest.mark.parametrize(
    "spec",
    [
        SMALL,
        DemoSpec(size=120, n_dates=1, granules=3, overlap=0.1, seed=2),
        DemoSpec(size=100, n_dates=1, granules=2, overlap=0.2, pixel_size=10.0, seed=2),
        DemoSpec(size=48, n_dates=1, granules=1, bands=3, crs="EPSG:32631", seed=2),
    ],
)
def test_granule_geometry(spec: DemoSpec, tmp_path: Path) -> None:
    inventory = make_demo(spec, tmp_path)
    first = [p for d, _, p in inventory if d == demo_dates(spec)[0]]
    assert len(first) == spec.granules**2
    footprints = {}
    sides = set()
    for (_, gran, _), path in zip(inventory, first, strict=False):
        with rasterio.open(path) as src:
            assert src.crs == rasterio.crs.CRS.from_string(spec.crs)
            assert src.count == spec.bands
            assert src.dtypes == ("uint16",) * spec.bands
            assert src.nodata == 0
            assert src.descriptions == ("B", "G", "R", "NIR")[: spec.bands]
            assert src.profile["compress"] == "deflate"
            by, bx = src.block_shapes[0]
            assert bx == by and bx % 16 == 0 and bx <= 256  # square tiles, not strips
            assert src.transform.a == spec.pixel_size and src.transform.e == -spec.pixel_size
            assert src.transform.b == 0 and src.transform.d == 0
            assert src.width == src.height
            r, c = _offsets(spec, src)  # snapped to whole pixels
            footprints[gran] = (r, c, src.height)
            sides.add(src.width)
    assert len(sides) == 1
    g = sides.pop()
    rows = sorted({r for r, _, _ in footprints.values()})
    cols = sorted({c for _, c, _ in footprints.values()})
    # union of the footprints is exactly the region
    assert rows[0] == 0 and cols[0] == 0
    assert rows[-1] + g == spec.size and cols[-1] + g == spec.size
    cover = np.zeros((spec.size, spec.size), dtype=int)
    for r, c, side in footprints.values():
        cover[r : r + side, c : c + side] += 1
    assert cover.min() >= 1
    # neighbours overlap by about overlap * g
    for a, b in zip(rows[:-1], rows[1:], strict=True):
        assert abs((a + g - b) - spec.overlap * g) <= 1.0
    # region bounds from the granules' bounds
    with rasterio.open(first[0]) as src0, rasterio.open(first[-1]) as src1:
        x0, y0 = spec.origin
        assert src0.bounds.left == x0 and src0.bounds.top == y0
        assert src1.bounds.right == pytest.approx(x0 + spec.size * spec.pixel_size)
        assert src1.bounds.bottom == pytest.approx(y0 - spec.size * spec.pixel_size)


def test_overlapping_granules_agree_up_to_noise(small_demo: tuple[Path, list]) -> None:
    out, inventory = small_demo
    for date in demo_dates(SMALL):
        paths = {g: p for d, g, p in inventory if d == date}
        with rasterio.open(paths["g00"]) as a_src, rasterio.open(paths["g01"]) as b_src:
            ra, ca = _offsets(SMALL, a_src)
            rb, cb = _offsets(SMALL, b_src)
            a, b = a_src.read().astype(float), b_src.read().astype(float)
        g = a.shape[1]
        overlap = ca + g - cb
        assert overlap > 0 and ra == rb
        sa = a[:, :, g - overlap :]  # right strip of g00
        sb = b[:, :, :overlap]  # left strip of g01: the same ground pixels
        ok = sa.all(axis=0) & sb.all(axis=0)
        assert ok.mean() > 0.9
        same = np.abs(sa - sb)[:, ok].mean() / sa[:, ok].mean()
        assert same < 0.06  # only the sensor noise differs
        assert (sa != sb)[:, ok].mean() > 0.5  # ... and it is independent
        # different ground pixels differ far more than the same pixels seen twice
        shifted = np.abs(sa[:, :, 1:] - sa[:, :, :-1])[:, ok[:, 1:] & ok[:, :-1]].mean()
        assert shifted > 2 * np.abs(sa - sb)[:, ok].mean()


# ----------------------------------------------------------------------------- nodata & truth


def test_nodata_wedges_and_truth(small_demo: tuple[Path, list]) -> None:
    out, inventory = small_demo
    for _, gran, path in inventory:
        img = _read(path)
        zero_all = (img == 0).all(axis=0)
        zero_any = (img == 0).any(axis=0)
        assert np.array_equal(zero_all, zero_any)  # nodata is 0 in every band at once
        g = img.shape[1]
        if gran in ("g00", "g11"):
            frac = zero_all.mean()
            assert 0.025 < frac < 0.07  # a triangle with legs ~25-35 % of the side
            corner = (0, 0) if gran == "g00" else (g - 1, g - 1)
            assert zero_all[corner]
        else:
            assert not zero_all.any()
        assert img.max() <= 10000

    with rasterio.open(truth_path(out)) as src:
        assert src.dtypes == ("uint8",)
        assert src.nodata == 255
        assert src.count == 1
        assert (src.width, src.height) == (SMALL.size, SMALL.size)
        x0, y0 = SMALL.origin
        assert tuple(src.transform)[:6] == (SMALL.pixel_size, 0, x0, 0, -SMALL.pixel_size, y0)
        assert src.crs == rasterio.crs.CRS.from_string(SMALL.crs)
        truth = src.read(1)
    # truth is nodata exactly where no granule has data, on every date
    for other in demo_dates(SMALL):
        _, cnt = _mosaic(SMALL, inventory, other)
        assert np.array_equal(truth == 255, cnt == 0)
    assert truth[0, 0] == 255 and truth[-1, -1] == 255
    assert truth[0, -1] != 255 and truth[-1, 0] != 255
    assert set(np.unique(truth).tolist()) == set(CLASS_NAMES) | {255}


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_truth_zones_are_large_and_contiguous(seed: int, tmp_path: Path) -> None:
    spec = DemoSpec(size=128, n_dates=1, seed=seed)
    make_demo(spec, tmp_path)
    truth = _read(truth_path(tmp_path))[0]
    for c in CLASS_NAMES:
        labels, n = ndimage.label(truth == c)
        assert n >= 1, CLASS_NAMES[c]
        largest = np.bincount(labels.ravel())[1:].max() / truth.size
        assert largest >= (0.01 if c == CLEARCUT else 0.04), CLASS_NAMES[c]
        # boundaries are not noisy: few components, no speckle
        assert n <= 4, CLASS_NAMES[c]
    # the clear-cut lies in the forest: most of its rim is evergreen forest
    cut = truth == CLEARCUT
    rim = ndimage.binary_dilation(cut, iterations=2) & ~cut
    assert np.isin(truth[rim], [EVERGREEN, DECIDUOUS]).mean() > 0.8


def test_default_region_is_fast_and_zones_span_many_tiles(tmp_path: Path) -> None:
    spec = DemoSpec()
    t0 = time.perf_counter()
    inventory = make_demo(spec, tmp_path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30  # ~1 s on a laptop; the brief asks < 10 s on 2 cores
    assert len(inventory) == 8 * 4
    truth = _read(truth_path(tmp_path))[0]
    tiles = truth.reshape(32, 16, 32, 16).transpose(0, 2, 1, 3).reshape(32, 32, 256)
    pure = tiles.min(axis=2) == tiles.max(axis=2)
    for c in CLASS_NAMES:
        n_tiles = int((pure & (tiles[:, :, 0] == c)).sum())
        assert n_tiles >= (10 if c == CLEARCUT else 40), (CLASS_NAMES[c], n_tiles)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    spec = DemoSpec(size=64, n_dates=2, seed=7)
    inv_a = make_demo(spec, tmp_path / "a")
    inv_b = make_demo(spec, tmp_path / "b")
    inv_c = make_demo(DemoSpec(size=64, n_dates=2, seed=8), tmp_path / "c")
    for (_, _, pa), (_, _, pb), (_, _, pc) in zip(inv_a, inv_b, inv_c, strict=True):
        a, b, c = _read(pa), _read(pb), _read(pc)
        assert a.dtype == np.uint16
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)
    ta, tb = _read(truth_path(tmp_path / "a")), _read(truth_path(tmp_path / "b"))
    tc = _read(truth_path(tmp_path / "c"))
    assert np.array_equal(ta, tb)
    assert not np.array_equal(ta, tc)


def test_dates_do_not_depend_on_each_other(tmp_path: Path) -> None:
    # a later change date alters nothing before the earlier one: every date and granule
    # draws from its own random stream
    early = make_demo(DemoSpec(size=64, n_dates=4, change_date=2, seed=5), tmp_path / "e")
    late = make_demo(DemoSpec(size=64, n_dates=4, change_date=3, seed=5), tmp_path / "l")
    changed = set()
    for (d, _, pe), (_, _, pl) in zip(early, late, strict=True):
        if not np.array_equal(_read(pe), _read(pl)):
            changed.add(d)
    assert changed == {demo_dates(DemoSpec(n_dates=4))[2]}


# ----------------------------------------------------------------------------- phenology


@pytest.fixture(scope="module")
def small_means(small_demo: tuple[Path, list]) -> np.ndarray:
    out, inventory = small_demo
    return _class_means(SMALL, out, inventory)


B, G, R, NIR = range(4)


def test_deciduous_leaf_on_in_summer(small_means: np.ndarray) -> None:
    # SMALL dates: mid-Feb, mid-May, mid-Aug, mid-Nov
    dec = small_means[:, DECIDUOUS]
    assert dec[2, NIR] > 1.6 * dec[0, NIR]
    assert dec[2, NIR] > 1.6 * dec[3, NIR]
    assert dec[2, R] < 0.6 * dec[0, R]  # green in summer, brown in winter
    ever = small_means[:, EVERGREEN]
    assert np.ptp(ever[:, NIR]) / ever[:, NIR].mean() < 0.1  # evergreen stays


def test_clearcut_changes_abruptly_at_change_date(small_means: np.ndarray) -> None:
    change = SMALL.n_dates // 2
    ever, cut = small_means[:, EVERGREEN], small_means[:, CLEARCUT]
    for d in range(SMALL.n_dates):
        rel = abs(cut[d, NIR] - ever[d, NIR]) / ever[d, NIR]
        if d < change:
            assert rel < 0.08  # still forest
            assert abs(cut[d, R] - ever[d, R]) < 0.3 * ever[d, R] + 150
        else:
            assert rel > 0.3  # bare soil and slash
            assert cut[d, R] > 2.0 * ever[d, R]
    drop = cut[change - 1, NIR] - cut[change, NIR]
    assert drop > 0.3 * cut[change - 1, NIR]
    assert abs(ever[change - 1, NIR] - ever[change, NIR]) < 0.1 * ever[change, NIR]


def test_change_date_parameter_moves_the_change(tmp_path: Path) -> None:
    spec = DemoSpec(size=96, n_dates=4, change_date=1, seed=3)
    means = _class_means(spec, tmp_path, make_demo(spec, tmp_path))
    nir_ratio = means[:, CLEARCUT, NIR] / means[:, EVERGREEN, NIR]
    assert nir_ratio[0] > 0.92
    assert np.all(nir_ratio[1:] < 0.75)


def test_snow_brightens_mountains_in_winter(small_means: np.ndarray) -> None:
    mnt = small_means[:, MOUNTAIN]
    assert mnt[0, :3].mean() > 3 * mnt[2, :3].mean()  # February vs August
    assert mnt[0, :3].mean() > 4000


def test_classes_distinct_over_time_and_textured(small_demo: tuple[Path, list]) -> None:
    out, inventory = small_demo
    means = _class_means(SMALL, out, inventory)
    for a in CLASS_NAMES:
        for b in CLASS_NAMES:
            if a < b:
                gap = np.abs(means[:, a] - means[:, b]).max()
                assert gap > 400, (CLASS_NAMES[a], CLASS_NAMES[b], gap)
    water = means[:, WATER]
    assert water[:, NIR].max() < 400 and water[:, NIR].max() < water[:, B].min()
    urban = means[:, URBAN]
    assert urban[:, NIR].max() < means[:, EVERGREEN, NIR].min()
    # textured: spatial variation within a zone well above the sensor noise (~3 %)
    truth = _read(truth_path(out))[0]
    mosaic, _ = _mosaic(SMALL, inventory, demo_dates(SMALL)[2])
    for c in (EVERGREEN, DECIDUOUS, CROPLAND, URBAN, MOUNTAIN, CLEARCUT):
        vals = mosaic[:, truth == c]
        cv = (vals.std(axis=1) / vals.mean(axis=1)).max()
        assert cv > 0.08, (CLASS_NAMES[c], cv)


def test_values_in_range(small_demo: tuple[Path, list]) -> None:
    _, inventory = small_demo
    for _, _, path in inventory:
        img = _read(path)
        valid = img.all(axis=0)
        assert img[:, valid].min() >= 1 and img.max() <= 10000


# ----------------------------------------------------------------------------- writing & CLI


def test_no_temporary_files_left(small_demo: tuple[Path, list]) -> None:
    out, inventory = small_demo
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    expected = sorted(["truth.tif"] + [p.relative_to(out).as_posix() for _, _, p in inventory])
    assert names == expected


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DemoSpec(size=64, n_dates=2, seed=1)
    inventory = demo_inventory(spec, tmp_path)
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(scene.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        make_demo(spec, tmp_path)
    monkeypatch.undo()
    present = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert present == sorted(p.name for _, _, p in inventory[:2])
    assert not truth_path(tmp_path).exists()
    # a rerun completes the folder
    make_demo(spec, tmp_path)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(p.name for _, _, p in inventory)


def test_step_writes_the_region_of_its_parameters(tmp_path: Path, caplog) -> None:
    params = DemoParams.from_json('{"size": 64, "n_dates": 3, "granules": 2, "overlap": 0.15, "pixel_size": 30, '
                                  '"bands": 4, "change_date": 1, "seed": 4, "year": 2022}')
    out = tmp_path / "step"
    logger = logging.getLogger("landtaxa")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="landtaxa"):
            demo_step(out=str(out), params=params)
    finally:
        logger.removeHandler(caplog.handler)
    spec = DemoSpec(size=64, n_dates=3, granules=2, overlap=0.15, pixel_size=30.0, bands=4, change_date=1, seed=4,
                    year=2022)
    assert spec_of(params) == spec
    dates = demo_dates(spec)
    progress = [r.getMessage() for r in caplog.records if "/3" in r.getMessage()]
    assert len(progress) == 3 and all(d in line for d, line in zip(dates, progress, strict=True))
    inventory = demo_inventory(spec, out)
    assert all(p.is_file() for _, _, p in inventory)
    with rasterio.open(inventory[0][2]) as src:
        assert src.res == (30.0, 30.0)
    assert np.array_equal(_read(inventory[-1][2]), _read(make_demo(spec, tmp_path / "api")[-1][2]))
    with pytest.raises(ValueError, match="change_date must be in 0..1"):
        demo_step(out=str(out), params=DemoParams.from_json('{"n_dates": 2, "change_date": 5}'))


def test_spec_defaults_are_the_schemas() -> None:
    """DemoSpec() (for notebooks) is the region a run without config generates."""
    assert spec_of(DemoParams.from_config(schema_defaults())) == DemoSpec()
