# The common grid over all granules, and every date mosaicked onto it.


rule grid:
    input:
        images=PLAN.local(PLAN.grid_images()),
        scale_images=PLAN.local(PLAN.scale_images()),
        aoi=PLAN.local([config["aoi"]] if config["aoi"] else []),
    output:
        grid=f"{R}/grid.json",
    params:
        images=PLAN.grid_images(),
        scale_images=PLAN.scale_images(),
        p=p("grid"),
        train_dates=PLAN.train_dates,
    log:
        "logs/grid/grid.log",
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=mem("grid"),
        runtime=runtime("grid"),
        disk_mb=disk("grid"),
    shell:
        "python -m landtaxa grid --images {params.images:q} --scale-images {params.scale_images:q}"
        " --train-dates {params.train_dates} --out {output.grid:q} --params {params.p:q} 2> {log:q}"


rule align:
    input:
        grid=rules.grid.output.grid,
        images=lambda wc: PLAN.local(PLAN.images_of(wc.date)),
        masks=lambda wc: PLAN.local(PLAN.masks_of(wc.date)),
    output:
        tif=f"{R}/aligned/{{date}}.tif",
        valid=f"{R}/aligned/{{date}}_valid.npz",
    params:
        images=lambda wc: PLAN.images_of(wc.date),
        masks=lambda wc: PLAN.masks_of(wc.date),
        p=p("align"),
    log:
        "logs/align/{date}.log",
    benchmark:
        f"{R}/benchmarks/align/{{date}}.tsv"
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=mem("align"),
        runtime=runtime("align"),
        disk_mb=disk("align"),
    shell:
        "python -m landtaxa align --grid {input.grid:q} --images {params.images:q} --masks {params.masks:q}"
        " --out {output.tif:q} --valid {output.valid:q} --params {params.p:q} 2> {log:q}"
