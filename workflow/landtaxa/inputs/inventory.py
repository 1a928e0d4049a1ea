"""The image inventory: which raster holds which granule on which date.

Images come from a sheet (TSV or CSV with columns ``date``, ``path`` and optional
``granule``, ``mask``, ``scale`` and ``offset``), from a folder/glob of rasters whose dates are
parsed from the file names with a regular expression, or from a STAC catalog
(:mod:`landtaxa.inputs.stac`). Several files on one date are that date's granules, mosaicked in
inventory order (sheet order, or file-name order for a folder). The inventory is checked
before any work starts; every problem names the file.

A path may also be any GDAL dataset string (``/vsizip/archive.zip/a.tif``,
``/vsicurl/https://...``, ``SENTINEL2_L2A:/x/MTD_MSIL2A.xml:10m:EPSG_32630``): such strings
go to GDAL as they are; only the local file behind one, if any, is checked and tracked.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import pandas as pd

from landtaxa.inputs.datasets import InventoryError, exists, is_gdal_path, local_file, open_georeferenced

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
# Digits only: pandas would otherwise read "", "nan", "NaT" as NaT and "today"/"now" as dates.
_DATE_TEXT = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{8}")


def parse_date(text: str, where: str) -> str:
    text = str(text).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d") if _DATE_TEXT.fullmatch(text) else ():
        try:
            return pd.to_datetime(text, format=fmt).date().isoformat()
        except (ValueError, TypeError):
            continue
    raise InventoryError(f"{where}: cannot read {text!r} as a date (expected YYYY-MM-DD or YYYYMMDD)")


_DATE_IN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}|\d{8}")


def default_granule(path: Path, date_text: str | None = None) -> str:
    """A granule name for a file that does not state one: its name without the date.

    Files of one granule on different dates (``T30TWN_20230402.tif``,
    ``T30TWN_20230512.tif``) then share a granule name (``T30TWN``).
    """
    stem = path.stem
    if date_text and date_text in stem:
        rest = stem.replace(date_text, "", 1)
    else:
        rest = _DATE_IN_NAME.sub("", stem, count=1)
    rest = re.sub(r"[_.\-\s]{2,}", "_", rest).strip("_.- ")
    return rest or "granule"


def read_sheet(sheet: str | os.PathLike) -> pd.DataFrame:
    sheet = Path(sheet)
    sep = "," if sheet.suffix.lower() == ".csv" else "\t"
    try:
        df = pd.read_csv(sheet, sep=sep, dtype=str, comment="#")
    except Exception as err:  # noqa: BLE001
        raise InventoryError(f"{sheet}: cannot read the image sheet ({err})") from err
    missing = {"date", "path"} - set(df.columns)
    if missing:
        raise InventoryError(
            f"{sheet}: the image sheet lacks column(s) {', '.join(sorted(missing))} "
            f"(it has {', '.join(df.columns)})"
        )
    rows = []
    for i, row in df.iterrows():
        where = f"{sheet}, row {i + 2}"
        path = _sheet_path(sheet, str(row["path"]).strip())
        granule = row.get("granule")
        granule = (str(granule).strip() if isinstance(granule, str) and granule.strip()
                   else default_granule(Path(local_file(path) or path)))
        mask = row.get("mask")
        if isinstance(mask, str) and mask.strip():
            mask = _sheet_path(sheet, mask.strip())
        else:
            mask = ""
        rows.append({"date": parse_date(row["date"], where), "granule": granule, "path": path, "mask": mask,
                     "scale": (row.get("scale") or "").strip(), "offset": (row.get("offset") or "").strip()})
    return pd.DataFrame(rows, columns=["date", "granule", "path", "mask", "scale", "offset"])


def _sheet_path(sheet: Path, text: str) -> str:
    """A path of the sheet: relative ones are relative to the sheet; GDAL strings stay as they are."""
    if is_gdal_path(text) or Path(text).is_absolute():
        return text
    return str(sheet.parent / text)


def read_folder(pattern: str, date_pattern: str) -> pd.DataFrame:
    if os.path.isdir(pattern):
        files = sorted(
            str(p) for p in Path(pattern).iterdir() if p.suffix.lower() in RASTER_SUFFIXES
        )
    else:
        files = sorted(glob.glob(pattern))
    if not files:
        raise InventoryError(f"{pattern}: no raster files found")
    regex = re.compile(date_pattern)
    rows = []
    for f in files:
        m = regex.search(os.path.basename(f))
        if not m:
            raise InventoryError(f"{f}: no date found in the file name with date_pattern {date_pattern!r}")
        groups = m.groupdict()
        text = groups.get("date") or (m.group(1) if m.groups() else m.group(0))
        granule = groups.get("granule") or default_granule(Path(f), text)
        rows.append({"date": parse_date(text, f), "granule": granule, "path": f, "mask": ""})
    return pd.DataFrame(rows, columns=["date", "granule", "path", "mask"])


def read_inventory(images: str, date_pattern: str) -> pd.DataFrame:
    """Inventory from a sheet or a folder/glob, validated; sorted by date, order kept within a date."""
    if str(images).lower().endswith((".tsv", ".csv", ".txt")):
        if not os.path.isfile(images):
            raise InventoryError(f"{images}: image sheet not found")
        df = read_sheet(images)
    else:
        df = read_folder(str(images), date_pattern)
    return validate_inventory(df, str(images))


def validate_inventory(df: pd.DataFrame, source: str) -> pd.DataFrame:
    if df.empty:
        raise InventoryError(f"{source}: no images listed")
    dup = df[df.duplicated(["date", "granule"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        raise InventoryError(
            f"{source}: date {first['date']} lists granule {first['granule']!r} more than once "
            f"({', '.join(dup[(dup.date == first.date) & (dup.granule == first.granule)].path)})"
        )
    for path in df["path"]:
        if not exists(path):
            raise InventoryError(f"{path}: image file not found (listed in {source})")
    if "mask" not in df.columns:
        df = df.assign(mask="")
    for path in df["mask"]:
        if path and not exists(path):
            raise InventoryError(f"{path}: mask file not found (listed in {source})")
    df = df.assign(_order=range(len(df))).sort_values(["date", "_order"], kind="stable")
    return df.drop(columns="_order").reset_index(drop=True)


def check_images(df: pd.DataFrame, bands: list[int] | None = None, mask_band: int | None = None) -> None:
    """Open every image (and mask) header before any work starts; raise on the first problem.

    Checks that each file is a raster GDAL can read, that no block of a GeoTIFF lies past
    the end of the file (a truncated copy), that it has a CRS, and that all images have the
    same number of bands and data type (the encoder's input must mean the same on every
    date), that the configured bands exist, and that masks are single rasters with a CRS.
    """
    first: tuple[str, int, str] | None = None
    items = df["item_id"] if "item_id" in df else [None] * len(df)
    for path, mask, item in zip(df["path"], df.get("mask", [""] * len(df)), items, strict=True):
        with open_georeferenced(path, "image") as src:
            count, dtype = src.count, src.dtypes[0]
            if src.width < 1 or src.height < 1:
                raise InventoryError(f"{path}: raster is empty")
            check_blocks(src, path)
        if first is None:
            first = (path, count, dtype)
        elif count != first[1]:
            raise InventoryError(
                f"{path}: has {count} bands but {first[0]} has {first[1]}; all images need the same bands"
            )
        elif dtype != first[2]:
            raise InventoryError(f"{path}: data type {dtype} differs from {first[0]} ({first[2]})")
        wanted = max([*(bands or [1]), mask_band or 1])
        if wanted > count:
            raise InventoryError(f"{path}: has {count} bands, the config asks for band {wanted}")
        if mask:
            open_georeferenced(mask, f"mask asset of item {item}" if item else f"mask of image {path}").close()


def check_blocks(src, path: str) -> None:
    """Refuse a GeoTIFF whose blocks run past the end of its file (an interrupted copy).

    Reads only the block offsets of the TIFF header, not the pixels. Corruption inside
    the file is found when the alignment reads it, which then names the file.
    """
    if src.driver != "GTiff" or is_gdal_path(path):
        return
    size = os.path.getsize(path)
    bh, bw = src.block_shapes[0]
    nx, ny = -(-src.width // bw), -(-src.height // bh)
    bands = [1] if src.interleaving is None or src.interleaving.name.upper() == "PIXEL" else range(1, src.count + 1)
    for b in bands:
        for y in range(ny):
            for x in range(nx):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=b)
                length = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=b)
                if offset and length and int(offset) + int(length) > size:
                    raise InventoryError(
                        f"{path}: the file is truncated (band {b}, block {x},{y} ends at byte "
                        f"{int(offset) + int(length)} of a {size}-byte file); copy it again from its source"
                    )
