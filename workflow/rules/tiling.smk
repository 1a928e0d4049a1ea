# The common grid over all granules, and every date mosaicked onto it.


rule grid:
    input:
        images=grid_images(),
        scale_images=scale_images(),
    output:
        grid=f"{RESULTS}/grid.json",
    params:
        tile_size=config["tile_size"],
        bands=opt(config["bands"]),
        crs=opt(config["crs"]),
        resolution=config["resolution"] or 0,
        scale_min=opt(config["scale"]["min"]),
        scale_max=opt(config["scale"]["max"]),
        percentiles=opt(config["scale"]["percentiles"]),
        nodata=opt(config["nodata"]),
    log:
        "logs/grid/grid.log",
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=30,
    shell:
        "python -m landtaxa grid --images {input.images:q} --tile-size {params.tile_size}"
        " --bands {params.bands} --crs {params.crs} --resolution {params.resolution}"
        " --scale-min {params.scale_min} --scale-max {params.scale_max}"
        " --percentiles {params.percentiles} --nodata {params.nodata} --scale-images {input.scale_images:q}"
        " --out {output.grid:q} 2> {log:q}"


rule aligned:
    input:
        grid=rules.grid.output.grid,
        images=lambda wc: images_of(wc.date),
        masks=lambda wc: [m for m in masks_of(wc.date) if m != "-"],
    output:
        tif=f"{RESULTS}/aligned/{{date}}.tif",
        valid=f"{RESULTS}/aligned/{{date}}_valid.npz",
    params:
        block_rows=config["block_rows"],
        gdal_cache_mb=config["gdal_cache_mb"],
        resampling=config["resampling"],
        masks=lambda wc: ("--masks " + " ".join(shlex.quote(m) for m in masks_of(wc.date))) if has_masks(wc.date) else "",
        mask_band=config["masks"]["band"] or 0,
        invalid=opt(config["masks"]["invalid"]),
        nodata=opt(config["nodata"]),
        empty_dates=config["empty_dates"],
    log:
        "logs/aligned/{date}.log",
    benchmark:
        "results/benchmarks/aligned/{date}.tsv"
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    shell:
        "GDAL_CACHEMAX={params.gdal_cache_mb} python -m landtaxa align --grid {input.grid:q} --images {input.images:q}"
        " --out {output.tif:q} --valid {output.valid:q} --block-rows {params.block_rows}"
        " --resampling {params.resampling} --mask-band {params.mask_band} --invalid {params.invalid}"
        " --nodata {params.nodata} --empty-dates {params.empty_dates} {params.masks} 2> {log:q}"
