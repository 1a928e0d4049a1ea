"""Tests of the image inventory (landtaxa.inputs.inventory)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rasters import write_raster

from landtaxa.inputs.inventory import (
    InventoryError,
    check_images,
    default_granule,
    read_folder,
    read_inventory,
    read_sheet,
    validate_inventory,
)

ISO = r"(\d{4}-\d{2}-\d{2})"
EITHER = r"(\d{4}-?\d{2}-?\d{2})"


def touch(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        paths.append(path)
    return paths


def records(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    return list(df[["date", "granule", "path"]].itertuples(index=False, name=None))


# --- folder ----------------------------------------------------------------------------


def test_folder_dates_in_both_formats_sorted_order_kept_within_a_date(tmp_path):
    img = tmp_path / "img"
    touch(img, "S2_2020-03-01_b.tif", "S2_2020-03-01_a.tif", "S2_20200301_c.TIF", "S2_20191231_x.tif",
          "S2_2020-01-15_y.tiff", "notes.txt", "S2_2020-01-15_y.tif.aux.xml")
    df = read_inventory(str(img), EITHER)
    assert list(df.columns) == ["date", "granule", "path", "mask"]
    assert [(d, g) for d, g, _ in records(df)][:2] == [
        ("2019-12-31", "S2_x"),
        ("2020-01-15", "S2_y"),
    ]
    # On 2020-03-01, file-name order: '-' sorts before digits, so the YYYY-MM-DD names come first.
    march = df[df.date == "2020-03-01"]
    assert list(march.granule) == ["S2_a", "S2_b", "S2_c"]
    assert list(march.path) == [str(img / "S2_2020-03-01_a.tif"), str(img / "S2_2020-03-01_b.tif"),
                                str(img / "S2_20200301_c.TIF")]
    assert df.index.tolist() == list(range(len(df)))


def test_folder_glob_pattern(tmp_path):
    touch(tmp_path, "2020-01-01_T31TCJ.tif", "2020-01-01_T31TDJ.tif", "2020-01-02_T31TCJ.tif", "2020-01-03_T31TCJ.jp2")
    df = read_inventory(str(tmp_path / "*_T31TCJ.tif"), ISO)
    assert records(df) == [
        ("2020-01-01", "T31TCJ", str(tmp_path / "2020-01-01_T31TCJ.tif")),
        ("2020-01-02", "T31TCJ", str(tmp_path / "2020-01-02_T31TCJ.tif")),
    ]


def test_folder_recursive_glob(tmp_path):
    touch(tmp_path, "2020/a_20200105.tif", "2019/a_20191105.tif")
    df = read_inventory(str(tmp_path / "**" / "*.tif"), r"_(\d{8})")
    assert df.date.tolist() == ["2019-11-05", "2020-01-05"]


def test_date_pattern_with_named_groups(tmp_path):
    touch(tmp_path, "T31TDJ_x_20200105.tif", "T31TCJ_x_20200105.tif", "T31TCJ_x_20200110.tif")
    pattern = r"(?P<granule>T\d{2}[A-Z]{3})_x_(?P<date>\d{8})"
    df = read_inventory(str(tmp_path), pattern)
    assert [(d, g) for d, g, _ in records(df)] == [
        ("2020-01-05", "T31TCJ"),
        ("2020-01-05", "T31TDJ"),
        ("2020-01-10", "T31TCJ"),
    ]


def test_date_pattern_without_groups_uses_the_whole_match(tmp_path):
    touch(tmp_path, "scene20210704v2.tif")
    df = read_folder(str(tmp_path), r"\d{8}")
    assert df.date.tolist() == ["2021-07-04"]
    assert df.granule.tolist() == ["scenev2"]  # the file name without its date


def test_date_pattern_first_group_when_unnamed(tmp_path):
    touch(tmp_path, "v1_2021-07-04_T31TCJ.tif")
    df = read_folder(str(tmp_path), r"v\d_(\d{4}-\d{2}-\d{2})_(T\w+)")
    assert df.date.tolist() == ["2021-07-04"]
    assert df.granule.tolist() == ["v1_T31TCJ"]  # unnamed groups never name the granule


# --- sheet -----------------------------------------------------------------------------


def test_tsv_sheet_relative_and_absolute_paths(tmp_path):
    meta = tmp_path / "meta"
    touch(meta / "img", "one.tif", "two.tif", "three.tif")
    elsewhere = touch(tmp_path / "other", "abs.tif")[0]
    sheet = meta / "images.tsv"
    sheet.write_text(
        "# images of the test region\n"
        "date\tpath\tgranule\n"
        "2020-02-01\timg/two.tif\tT2\n"
        "20200101\timg/one.tif\tT1\n"
        f"2020-02-01\t{elsewhere}\t\n"
        "2020-02-01\t img/three.tif \t T3 \n"
    )
    df = read_inventory(str(sheet), ISO)
    assert records(df) == [
        ("2020-01-01", "T1", str(meta / "img" / "one.tif")),
        ("2020-02-01", "T2", str(meta / "img" / "two.tif")),
        ("2020-02-01", "abs", str(elsewhere)),  # empty granule: the file's stem
        ("2020-02-01", "T3", str(meta / "img" / "three.tif")),
    ]


def test_csv_sheet_without_granule_column(tmp_path):
    touch(tmp_path / "data", "b.tif", "a.tif")
    sheet = tmp_path / "data" / "list.csv"
    sheet.write_text("path,date\nb.tif,2021-06-01\na.tif,2021-05-31\n")
    df = read_inventory(str(sheet), ISO)
    assert records(df) == [
        ("2021-05-31", "a", str(tmp_path / "data" / "a.tif")),
        ("2021-06-01", "b", str(tmp_path / "data" / "b.tif")),
    ]


def test_read_sheet_resolves_against_the_sheet_folder_not_the_cwd(tmp_path, monkeypatch):
    touch(tmp_path / "s", "x.tif")
    (tmp_path / "s" / "images.tsv").write_text("date\tpath\n2020-01-01\tx.tif\n")
    monkeypatch.chdir(tmp_path)
    df = read_sheet(Path("s") / "images.tsv")
    assert df.path.tolist() == [str(Path("s") / "x.tif")]
    assert Path(df.path[0]).is_file()


# --- errors ----------------------------------------------------------------------------


def test_sheet_missing_column(tmp_path):
    sheet = tmp_path / "images.tsv"
    sheet.write_text("day\tpath\n2020-01-01\tx.tif\n")
    with pytest.raises(InventoryError, match=re.escape(f"{sheet}: the image sheet lacks column(s) date")):
        read_inventory(str(sheet), ISO)
    sheet.write_text("date,path\n2020-01-01,x.tif\n")  # commas in a .tsv: one column
    with pytest.raises(InventoryError, match=r"images\.tsv: the image sheet lacks column\(s\) date, path"):
        read_inventory(str(sheet), ISO)


@pytest.mark.parametrize("bad", ["2020-13-01", "2020-02-30", "01/02/2020", "2020010", "today", "now", "NaT", ""])
def test_sheet_unparseable_date(tmp_path, bad):
    touch(tmp_path, "x.tif", "y.tif")
    sheet = tmp_path / "images.csv"
    sheet.write_text(f"date,path\n2020-01-01,x.tif\n{bad},y.tif\n")
    with pytest.raises(InventoryError, match=re.escape(f"{sheet}, row 3: cannot read")):
        read_inventory(str(sheet), ISO)


def test_folder_unparseable_date(tmp_path):
    (path,) = touch(tmp_path, "img_2020-02-30.tif")
    with pytest.raises(InventoryError, match=re.escape(f"{path}: cannot read '2020-02-30' as a date")):
        read_inventory(str(tmp_path), ISO)


def test_duplicate_date_granule_in_sheet(tmp_path):
    touch(tmp_path, "a.tif", "b.tif")
    sheet = tmp_path / "images.tsv"
    sheet.write_text("date\tpath\tgranule\n2020-01-01\ta.tif\tT1\n2020-01-02\ta.tif\tT1\n20200101\tb.tif\tT1\n")
    with pytest.raises(InventoryError) as err:
        read_inventory(str(sheet), ISO)
    msg = str(err.value)
    assert msg.startswith(f"{sheet}: date 2020-01-01 lists granule 'T1' more than once")
    assert str(tmp_path / "a.tif") in msg and str(tmp_path / "b.tif") in msg


def test_duplicate_date_granule_in_folder(tmp_path):
    touch(tmp_path, "2020-01-01_T31TCJ_a.tif", "20200101_T31TCJ_b.tif")
    with pytest.raises(InventoryError, match=re.escape(f"{tmp_path}: date 2020-01-01 lists granule 'T31TCJ'")):
        read_inventory(str(tmp_path), r"(?P<date>\d{4}-?\d{2}-?\d{2})_(?P<granule>T\w{5})")


def test_listed_path_does_not_exist(tmp_path):
    touch(tmp_path, "a.tif")
    sheet = tmp_path / "images.tsv"
    sheet.write_text("date\tpath\n2020-01-01\ta.tif\n2020-01-02\tmissing.tif\n")
    with pytest.raises(InventoryError, match=re.escape(f"{tmp_path / 'missing.tif'}: image file not found "
                                                       f"(listed in {sheet})")):
        read_inventory(str(sheet), ISO)


def test_sheet_not_found(tmp_path):
    with pytest.raises(InventoryError, match=re.escape(f"{tmp_path / 'nope.csv'}: image sheet not found")):
        read_inventory(str(tmp_path / "nope.csv"), ISO)


def test_empty_sheet(tmp_path):
    sheet = tmp_path / "images.tsv"
    sheet.write_text("date\tpath\n")
    with pytest.raises(InventoryError, match=re.escape(f"{sheet}: no images listed")):
        read_inventory(str(sheet), ISO)


def test_empty_folder(tmp_path):
    touch(tmp_path, "readme.md")
    with pytest.raises(InventoryError, match=re.escape(f"{tmp_path}: no raster files found")):
        read_inventory(str(tmp_path), ISO)
    with pytest.raises(InventoryError, match=re.escape(f"{tmp_path / '*.tif'}: no raster files found")):
        read_inventory(str(tmp_path / "*.tif"), ISO)


def test_file_name_without_a_date(tmp_path):
    _, bad = touch(tmp_path, "2020-01-01.tif", "mosaic.tif")
    with pytest.raises(InventoryError, match=re.escape(f"{bad}: no date found in the file name")) as err:
        read_inventory(str(tmp_path), ISO)
    assert repr(ISO) in str(err.value)


def test_validate_inventory_keeps_order_within_a_date(tmp_path):
    paths = touch(tmp_path, "p.tif", "q.tif", "r.tif", "s.tif")
    df = pd.DataFrame(
        {"date": ["2020-05-01", "2020-01-01", "2020-05-01", "2020-01-01"],
         "granule": ["z", "y", "a", "b"],
         "path": [str(p) for p in paths]}
    )
    out = validate_inventory(df, "src")
    assert list(out.granule) == ["y", "b", "z", "a"]
    assert list(out.index) == [0, 1, 2, 3]


def test_default_granule_is_the_file_name_without_its_date(tmp_path):
    """Files of one granule on several dates share a granule name, so new dates add no granule."""
    touch(tmp_path, "2023-01-23_g00.tif", "2023-01-23_g01.tif", "2023-03-10_g00.tif", "2023-03-10_g01.tif")
    df = read_inventory(str(tmp_path), ISO)
    assert df.granule.tolist() == ["g00", "g01", "g00", "g01"]
    assert default_granule(Path("S2B_T30TWN_20230402_L2A.tif")) == "S2B_T30TWN_L2A"
    assert default_granule(Path("20230402.tif")) == "granule"


@pytest.mark.parametrize("options", [{}, {"interleave": "band"},
                                     {"tiled": True, "blockxsize": 16, "blockysize": 16, "compress": "deflate"}],
                         ids=["strips", "band-interleaved", "tiled-deflate"])
def test_check_images_finds_a_truncated_file(make_raster, options) -> None:
    whole = make_raster("2020-01-01_a.tif", np.arange(3 * 40 * 40, dtype="uint16").reshape(3, 40, 40),
                        "EPSG:32631", (500000, 4000000, 10), **options)
    cut = whole.with_name("2020-02-01_a.tif")
    cut.write_bytes(whole.read_bytes()[:-50])
    df = pd.DataFrame({"date": ["2020-01-01", "2020-02-01"], "granule": "a", "path": [str(whole), str(cut)],
                       "mask": ""})
    check_images(df.iloc[:1])  # the whole file passes
    with pytest.raises(InventoryError, match=re.escape(f"{cut}: the file is truncated")):
        check_images(df)

# --------------------------------------------------------------------------- header checks of an archive

CHECK_UTM = "EPSG:32631"


def image(tmp_path: Path, name: str, value: int, bands: int = 2) -> Path:
    return write_raster(tmp_path / name, np.full((bands, 16, 16), value, "uint16"), CHECK_UTM, (500000, 4000000, 10))


def junk(path: Path) -> Path:
    path.write_text("not a raster")
    return path


def sheet(*paths, masks=None) -> pd.DataFrame:
    return pd.DataFrame({"date": [f"2020-01-0{i + 1}" for i in range(len(paths))], "granule": "g",
                         "path": [str(p) for p in paths], "mask": masks or [""] * len(paths)})


def test_check_images_accepts_a_consistent_archive_and_checks_its_bands(tmp_path: Path) -> None:
    """Two 2-band images and a mask pass with band 2 asked for; band 3 of the same archive is refused."""
    mask = write_raster(tmp_path / "a_mask.tif", np.zeros((16, 16), "uint8"), CHECK_UTM, (500000, 4000000, 10))
    archive = sheet(image(tmp_path, "a.tif", 1), image(tmp_path, "b.tif", 2), masks=[str(mask), ""])
    assert check_images(archive, bands=[2], mask_band=2) is None
    with pytest.raises(InventoryError, match=r"a.tif: has 2 bands, the config asks for band 3"):
        check_images(archive, bands=[3])


@pytest.mark.parametrize(
    ("make_second", "message"),
    [
        (lambda p: image(p, "b.tif", 2, bands=3), "b.tif: has 3 bands but .*a.tif has 2"),
        (lambda p: write_raster(p / "b.tif", np.ones((2, 16, 16), "float32"), CHECK_UTM, (500000, 4000000, 10)),
         "b.tif: data type float32 differs from .*a.tif \\(uint16\\)"),
        (lambda p: write_raster(p / "b.tif", np.ones((2, 16, 16), "uint16"), None, (500000, 4000000, 10)),
         "b.tif: image: no CRS"),
        (lambda p: junk(p / "b.tif"), "b.tif: image: not a readable raster \\(GDAL: "),
    ],
)
def test_check_images_names_the_file_and_problem(tmp_path: Path, make_second, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        check_images(sheet(image(tmp_path, "a.tif", 1), make_second(tmp_path)))


def test_check_images_band_beyond_count_and_bad_mask(tmp_path: Path) -> None:
    a = image(tmp_path, "a.tif", 1)
    with pytest.raises(InventoryError, match="a.tif: has 2 bands, the config asks for band 4"):
        check_images(sheet(a), bands=[1, 4])
    with pytest.raises(InventoryError, match="a.tif: has 2 bands, the config asks for band 3"):
        check_images(sheet(a), mask_band=3)
    (tmp_path / "m.tif").write_text("junk")
    with pytest.raises(InventoryError, match=r"m.tif: mask of image .*a\.tif: not a readable raster"):
        check_images(sheet(a, masks=[str(tmp_path / "m.tif")]))
