"""TileNet vs tilenet-lite in one run: embedding throughput and taxonomy quality.

For each encoder: tiles/s of the embedding step on the CPU (landtaxa's batched pipeline, the
paper's 100 px tiles), and the whole workflow's ARI/NMI against the truth on the built-in
demo and on the real Slovenia NDVI series (../shared/data). Writes benchmarks/out/encoders.json.

    python benchmarks/bench_encoders.py                  # demo + Slovenia
    python benchmarks/bench_encoders.py --data demo
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "workflow"))  # the workflow runner the tests use

from runner import Snakemake  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
SLOVENIA = ROOT.parent / "shared" / "data" / "slovenia-s2-ndvi" / "geotiff"
ENCODERS = ("tilenet", "tilenet-lite")


def throughput(encoder: str) -> float:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_embed.py"), "--encoder", encoder, "--size", "2000",
           "--baseline-tiles", "5"]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads((OUT / f"embed_{encoder}_cpu.json").read_text())["pipeline_tiles_per_s"]


def slovenia_config(work: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "workflow"))
    from test_real_data import unpack  # the test's own unpacking of the archive into per-date files

    images = unpack(SLOVENIA / "NDVI_68dates.tif", work / "archive" / "ndvi", "float32")
    masks = unpack(SLOVENIA / "IS_VALID_68dates.tif", work / "archive" / "valid", "uint8")
    rows, seen = ["date\tgranule\tpath\tmask"], {}
    for (when, img), (_, msk) in zip(images, masks, strict=True):
        seen[when[:10]] = seen.get(when[:10], 0) + 1
        rows.append(f"{when[:10]}\tpass{seen[when[:10]]}\t{img}\t{msk}")
    (work / "images.tsv").write_text("\n".join(rows) + "\n")
    return {"images": str(work / "images.tsv"), "truth": str(SLOVENIA / "LULC.tif"), "tile_size": 10,
            "masks": {"invalid": [0]}, "max_missing": 0.8, "n_clusters": 4, "empty_dates": "keep"}


def run_workflow(config: dict, work: Path) -> tuple[dict, float]:
    (work / "run.yaml").write_text(json.dumps(config))
    cmd = Snakemake().command(work, "--cores", "2", "--quiet", configs=[work / "run.yaml"])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    metrics = json.loads((work / "results" / "metrics.json").read_text())
    return {m: {k: v[k] for k in ("ari", "nmi", "silhouette")} for m, v in metrics.items()}, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=["demo", "slovenia"], choices=["demo", "slovenia"])
    args = p.parse_args()
    result: dict = {"tiles_per_s_100px_cpu": {e: throughput(e) for e in ENCODERS}}
    for data in args.data:
        for enc in ENCODERS:
            with tempfile.TemporaryDirectory(prefix=f"landtaxa-{data}-") as tmp:
                base = {} if data == "demo" else slovenia_config(Path(tmp))
                quality, wall = run_workflow({**base, "encoder": {"name": enc}}, Path(tmp))
            result.setdefault(data, {})[enc] = {"wall_seconds": wall, **quality}
            print(f"{data} {enc}: {wall:.0f} s {quality}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "encoders.json").write_text(json.dumps(result, indent=2) + "\n")
    rates = result["tiles_per_s_100px_cpu"]
    print(f"{'':26}{'tilenet':>12}{'tilenet-lite':>14}{'ratio':>8}")
    print(f"{'tiles/s (100 px, CPU)':26}{rates['tilenet']:>12.1f}{rates['tilenet-lite']:>14.1f}"
          f"{rates['tilenet-lite'] / rates['tilenet']:>8.1f}")
    for data in args.data:
        for model in ("geo", "refined"):
            for key in ("ari", "nmi"):
                a, b = (result[data][e][model][key] for e in ENCODERS)
                print(f"{f'{data} {model} {key}':26}{a:>12.3f}{b:>14.3f}{b - a:>+8.3f}")
        a, b = (result[data][e]["wall_seconds"] for e in ENCODERS)
        print(f"{f'{data} workflow seconds':26}{a:>12.0f}{b:>14.0f}{b / a:>8.2f}")


if __name__ == "__main__":
    main()
