# Every tile embedded on every date (one job per date and model of the chain, which embeds with each of that
# model's members in turn: they share the job's start, torch's import most of all, and each writes its own Zarr
# store, chunk by chunk), then the series: the cube of the dates (results/embeddings/<model>.zarr: links to the
# per-date stores, no copy, which xarray opens) and its index (results/series/<model>.npz).


rule embed:
    input:
        grid=rules.grid.output.grid,
        models=lambda wc: [f"{R}/models/{m}.pt" for m in PLAN.members[wc.family]],
        aligned=f"{R}/aligned/{{date}}.tif",
        valid=f"{R}/aligned/{{date}}_valid.npz",
    output:
        embeddings=directory([f"{R}/embeddings/{{family}}{member}/{{date}}.zarr" for member in PLAN.member_suffixes]),
    wildcard_constraints:
        family="|".join(PLAN.chain),
    params:
        p=p("embed"),
    threads: threads("embed")
    log:
        "logs/embed/{family}/{date}.log",
    benchmark:
        f"{R}/benchmarks/embed/{{family}}/{{date}}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
        mem_mb=mem("embed"),
        gpu_mem_mb=gpu_mem("embed"),
        runtime=runtime("embed"),
        disk_mb=disk("embed"),
    shell:
        "python -m landtaxa embed --grid {input.grid:q} --model {input.models:q} --aligned {input.aligned:q}"
        " --valid {input.valid:q} --date {wildcards.date} --out {output.embeddings:q} --threads {threads}"
        " --params {params.p:q} 2> {log:q}"


# The baselines' features are band statistics of the pixels alone: no GPU, no model to load, and no torch
# (its import would be most of such a job's time). Their model files (models/<baseline>.pt, rule untrained)
# are final outputs of the run that no job reads.
rule embed_baseline:
    input:
        grid=rules.grid.output.grid,
        aligned=f"{R}/aligned/{{date}}.tif",
        valid=f"{R}/aligned/{{date}}_valid.npz",
    output:
        embeddings=directory(f"{R}/embeddings/{{baseline}}/{{date}}.zarr"),
    wildcard_constraints:
        baseline="|".join(PLAN.baselines),
    params:
        encoder=lambda wc: PLAN.encoder_of(wc.baseline),
        p=p("embed_baseline"),
    log:
        "logs/embed/{baseline}/{date}.log",
    benchmark:
        f"{R}/benchmarks/embed/{{baseline}}/{{date}}.tsv"
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=mem("embed_baseline"),
        runtime=runtime("embed_baseline"),
        disk_mb=disk("embed_baseline"),
    shell:
        "python -m landtaxa embed_baseline --grid {input.grid:q} --encoder {params.encoder} --aligned {input.aligned:q}"
        " --valid {input.valid:q} --date {wildcards.date} --out {output.embeddings:q} --params {params.p:q}"
        " 2> {log:q}"


rule series:
    input:
        embeddings=expand(f"{R}/embeddings/{{{{model}}}}/{{date}}.zarr", date=PLAN.dates),
    output:
        series=f"{R}/series/{{model}}.npz",
        cube=directory(f"{R}/embeddings/{{model}}.zarr"),
    wildcard_constraints:
        model="|".join(PLAN.embedded),
    params:
        dates=PLAN.dates,
        p=p("series", "model"),
    log:
        "logs/series/{model}.log",
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=mem("series"),
        runtime=runtime("series"),
        disk_mb=disk("series"),
    shell:
        "python -m landtaxa series --embeddings {input.embeddings:q} --dates {params.dates}"
        " --out {output.series:q} --cube {output.cube:q} --params {params.p:q} 2> {log:q}"


# The series of the training dates only: what the refinement learns from stays put as dates are added.
use rule series as series_train with:
    input:
        embeddings=expand(f"{R}/embeddings/{{{{model}}}}/{{date}}.zarr", date=PLAN.train_dates),
    output:
        series=f"{R}/series/train/{{model}}.npz",
        cube=directory(f"{R}/embeddings/train/{{model}}.zarr"),
    params:
        dates=PLAN.train_dates,
        p=p("series", "model"),
    resources:
        mem_mb=mem("series_train"),
        runtime=runtime("series_train"),
        disk_mb=disk("series_train"),
    log:
        "logs/series_train/{model}.log",
