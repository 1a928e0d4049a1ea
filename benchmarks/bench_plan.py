"""What a cluster is asked for at the paper's scale and a country's: every rule's requests, before and after.

Builds virtual regions: one small GeoTIFF (512 x 512 px, 4 bands), and per date a VRT of any size over
it (one source stretched over the whole region), so nothing region-sized is written and only headers
are read. Then plans each region as a user would, ``snakemake -n --profile workflow/profiles/slurm``
with the defaults (tile_size 100, the paper's TileNet), and reads every job's requests from the dry
run's output: the largest ``mem_mb`` (host), ``gpu_mem_mb`` and ``runtime`` per rule. With
``--baseline REV`` the same plans are made with that revision of the code (``git archive``), and
both are printed side by side. Also prints each plan's wall time and the lines the run prints
before it starts; writes benchmarks/out/plan.json.

With ``--viewer``, the viewer step itself runs on each region, as the workflow runs it: the grid, a
clustering of every tile with smooth clusters, the kinds table of every tile on every date (written
as the evolution step writes it) and the virtual dates as the aligned mosaics; its peak RSS (VmHWM) and
the page's size are printed next to the estimates (the request, and the bound the disk check uses).

    python benchmarks/bench_plan.py                      # the paper's setting and a country
    python benchmarks/bench_plan.py --baseline fefb851   # and the same plans with that commit's code
    python benchmarks/bench_plan.py --regions paper --viewer
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "tests" / "workflow"))  # the workflow runner the tests use

from runner import Snakemake  # noqa: E402

from landtaxa.peaks import run_step  # noqa: E402

PROFILE = ROOT / "workflow" / "profiles" / "slurm"
SOURCE_PX = 512
# name: (side in px, dates): the paper's four granules (22,000 px, 48,400 tiles of 100 px, 20 dates) and a
# country (100,000 px: 1,000,000 tiles of 100 px, 50 dates)
REGIONS = {"paper": (22_000, 20), "country": (100_000, 50)}
REQUESTS = ("mem_mb", "gpu_mem_mb", "runtime")


def write_source(path: Path) -> None:
    """The one small file every virtual region reads from: 4 bands of uint16 texture, 10 m pixels."""
    rng = np.random.default_rng(0)
    data = rng.integers(200, 4000, (4, SOURCE_PX, SOURCE_PX), dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=SOURCE_PX, height=SOURCE_PX, count=4, dtype="uint16",
                       crs="EPSG:32630", transform=from_origin(400_000, 4_800_000, 10, 10), tiled=True,
                       compress="deflate") as dst:
        dst.write(data)


def write_vrt(path: Path, source: Path, side: int) -> None:
    """A ``side`` x ``side`` px VRT (10 m pixels) whose every band is the source's band stretched over it."""
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>{b}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{SOURCE_PX}" ySize="{SOURCE_PX}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{side}" ySize="{side}"/></SimpleSource></VRTRasterBand>'
        for b in range(1, 5))
    crs = rasterio.crs.CRS.from_epsg(32630).to_wkt()
    path.write_text(f'<VRTDataset rasterXSize="{side}" rasterYSize="{side}"><SRS>{crs}</SRS>'
                    f"<GeoTransform>400000, 10, 0, 4800000, 0, -10</GeoTransform>{bands}</VRTDataset>\n")


def virtual_region(folder: Path, side: int, dates: int) -> Path:
    """The sheet of ``dates`` virtual dates of a ``side`` px region; returns a config overlay pointing at it."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source.tif"
    write_source(source)
    rows = ["date\tpath"]
    for t in range(dates):
        date = f"{2020 + t // 12}-{1 + t % 12:02d}-15"
        vrt = folder / f"{date}.vrt"
        write_vrt(vrt, source, side)
        rows.append(f"{date}\t{vrt}")
    (folder / "images.tsv").write_text("\n".join(rows) + "\n")
    overlay = folder / "region.yaml"
    # no disk check: this machine will not hold the outputs, the plan is all that is wanted
    overlay.write_text(json.dumps({"images": str(folder / "images.tsv"), "tile_size": 100, "disk": {"check": False}})
                       + "\n")
    return overlay


def dry_run(code: Path, workdir: Path, overlay: Path) -> tuple[float, dict[str, dict], list[str], str]:
    """``snakemake -n --profile <code's slurm profile>``: (seconds, rule -> jobs and largest requests, the lines
    landtaxa printed, the output's tail when it failed)."""
    cmd = Snakemake(code).command(workdir, "-n", "--profile", str(code / "workflow" / "profiles" / "slurm"),
                                  configs=[overlay])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**_env(code)}, timeout=1800)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    rules: dict[str, dict] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"resources: (.*)", block)
        if not m or not res:
            continue
        values = dict(kv.split("=", 1) for kv in res[1].split(", ") if "=" in kv)
        st = rules.setdefault(m[1], {"jobs": 0, **{k: 0 for k in REQUESTS}})
        st["jobs"] += 1
        for key in REQUESTS:
            if key in values and values[key].isdigit():
                st[key] = max(st[key], int(values[key]))
    said = [line for line in out.splitlines() if line.startswith("landtaxa:")]
    return seconds, rules, said, "" if proc.returncode == 0 else out[-3000:]


def _env(code: Path) -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(code / "workflow")}


def viewer_case(folder: Path, side: int, dates: int, k: int = 9) -> dict:
    """Run the viewer step on a region of ``side`` px in 100 px tiles over ``dates`` virtual dates (the sheet of
    :func:`virtual_region` in ``folder``): its peak RSS and page size, beside the estimates."""

    import pandas as pd

    from landtaxa.inputs.grid import Grid
    from landtaxa.params import ViewerParams
    from landtaxa.products.evolution import write_labels_table
    from landtaxa.resources import MB, Sizes, job_needs
    from landtaxa.storage import save_npz

    grid = Grid(crs=rasterio.crs.CRS.from_epsg(32630).to_wkt(), transform=(10.0, 0.0, 400000.0, 0.0, -10.0, 4800000.0),
                width=side, height=side, tile_size=100, bands=[1, 2, 3, 4], dtype="uint16", scale_min=[0.0] * 4,
                scale_max=[4000.0] * 4)
    grid.save(folder / "grid.json")
    n = grid.n_tiles
    rng = np.random.default_rng(0)
    rows, cols = np.divmod(np.arange(n), grid.n_cols)
    labels = (rows // 15 * 7 + cols // 15 * 3) % k  # patches of 15 x 15 tiles, then 10% of the tiles elsewhere
    labels = np.where(rng.uniform(size=n) < 0.1, rng.integers(0, k, n), labels)
    kind = np.repeat(labels[:, None], dates, axis=1).astype(np.int16)
    for t in range(1, dates):  # 2% of the tiles change kind on each date, and keep it
        moved = rng.uniform(size=n) < 0.02
        kind[moved, t:] = rng.integers(0, k, (int(moved.sum()), 1))
    names = sorted(line.split("\t")[0] for line in (folder / "images.tsv").read_text().splitlines()[1:])
    save_npz(folder / "k.npz", tile_ids=np.arange(n), labels=labels, centroids=rng.normal(0, 1, (k, 16)))
    write_labels_table(str(folder / "labels.parquet"), grid, np.arange(n), labels, kind, kind, names)
    pd.DataFrame({"tile_id": rng.choice(n, 3 * k, replace=False)}).to_csv(folder / "representatives.csv", index=False)
    aligned = [str(folder / f"{d}.vrt") for d in names]
    args = ["viewer", "--grid", str(folder / "grid.json"), "--clusters", str(folder / "k.npz"), "--kinds",
            str(folder / "labels.parquet"), "--representatives", str(folder / "representatives.csv"), "--aligned",
            *aligned, "--model", "geo", "--out", str(folder / "index.html")]
    run = run_step(args, folder / "peaks.jsonl", {"PYTHONPATH": str(ROOT / "workflow")})
    sizes = Sizes(n_tiles=n, n_dates=dates, z_dim=512, n_bands=4, tile_size=100, width=side, height=side, k=k)
    needs = job_needs("viewer", sizes, ViewerParams.from_json("{}"))
    return {"peak_mb": run["peak_mb"], "estimate_mb": needs.host / MB,
            "page_mb": (folder / "index.html").stat().st_size / MB, "page_bound_mb": needs.disk / MB,
            "seconds": run["seconds"]}


def checkout(rev: str, folder: Path) -> Path:
    """The code of git revision ``rev``, unpacked under ``folder``."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _mb(v: int) -> str:
    return f"{v:,}" if v else "-"


def _h(minutes: int) -> str:
    return f"{minutes / 60:,.1f} h" if minutes else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regions", nargs="+", default=list(REGIONS), choices=list(REGIONS))
    p.add_argument("--baseline", help="a git revision whose code is planned too (before)")
    p.add_argument("--viewer", action="store_true", help="run the viewer step on each region too")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "workflow"))
    from landtaxa.products.page import page_bytes

    results = {}
    with tempfile.TemporaryDirectory(prefix="landtaxa-plan-") as tmp:
        codes = {"after": ROOT}
        if args.baseline:
            codes = {"before": checkout(args.baseline, Path(tmp) / "before"), **codes}
        for name in args.regions:
            side, dates = REGIONS[name]
            overlay = virtual_region(Path(tmp) / name, side, dates)
            results[name] = {"side_px": side, "dates": dates, "tiles": (side // 100) ** 2}
            for label, code in codes.items():
                work = Path(tmp) / f"{name}-{label}"
                work.mkdir()
                seconds, rules, said, failed = dry_run(code, work, overlay)
                results[name][label] = {"seconds": seconds, "rules": rules, "said": said, "failed": failed}
                print(f"{name} ({label}): planned in {seconds:.0f} s" + (f"; FAILED:\n{failed}" if failed else ""),
                      flush=True)
            results[name]["viewer_page_bound_mb"] = page_bytes(results[name]["tiles"], dates, 230, 100) / 2**20
            if args.viewer:
                results[name]["viewer"] = viewer_case(overlay.parent, side, dates)
                print(f"{name}: viewer {results[name]['viewer']}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "plan.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, res in results.items():
        print(f"\n## {name}: {res['side_px']:,} x {res['side_px']:,} px, 4 bands, {res['dates']} dates, "
              f"{res['tiles']:,} tiles of 100 px (SLURM profile, defaults)")
        labels = [lab for lab in ("before", "after") if lab in res]
        head = f"{'rule':18}{'jobs':>6}" + "".join(f"{f'mem_mb {lab}':>18}{f'runtime {lab}':>18}" for lab in labels)
        print(head + f"{'gpu_mem_mb':>12}")
        names = sorted(set().union(*(res[lab]["rules"] for lab in labels)) - {"all"})  # all: the local target
        for rule in names:
            row = f"{rule:18}{res[labels[-1]]['rules'].get(rule, {}).get('jobs', 0):>6}"
            for lab in labels:
                st = res[lab]["rules"].get(rule, {})
                row += f"{_mb(st.get('mem_mb', 0)):>18}{_h(st.get('runtime', 0)):>18}"
            print(row + f"{_mb(res[labels[-1]]['rules'].get(rule, {}).get('gpu_mem_mb', 0)):>12}")
        after = res[labels[-1]]["rules"]
        if after:
            print(f"largest host request {max(st['mem_mb'] for st in after.values()):,} MB; longest "
                  f"{max(st['runtime'] for st in after.values()) / 60:.1f} h; plan built in "
                  f"{res[labels[-1]]['seconds']:.0f} s; the viewer page at most {res['viewer_page_bound_mb']:.0f} MB")
        for line in res[labels[-1]]["said"]:
            print("  " + line)
        if "viewer" in res:
            v = res["viewer"]
            print(f"viewer step run: peak {v['peak_mb']:,.0f} MB (estimate {v['estimate_mb']:,.0f} MB before the "
                  f"safety factor), page {v['page_mb']:.1f} MB (bound {v['page_bound_mb']:.1f} MB), "
                  f"{v['seconds']:.0f} s")


if __name__ == "__main__":
    main()
