# Every tile embedded on every date (one job per model and date), then the N x T x D series.


rule embeddings:
    input:
        grid=rules.grid.output.grid,
        model=f"{RESULTS}/models/{{model}}.pt",
        aligned=f"{RESULTS}/aligned/{{date}}.tif",
        valid=f"{RESULTS}/aligned/{{date}}_valid.npz",
    output:
        embeddings=f"{RESULTS}/embeddings/{{model}}/{{date}}.npz",
    params:
        min_valid=config["min_valid"],
        batch_size=config["embed"]["batch_size"] or 0,
        block_rows=config["block_rows"],
        gdal_cache_mb=config["gdal_cache_mb"],
        device=config["device"],
        compile="--compile" if config["embed"]["compile"] else "",
    threads: 1
    log:
        "logs/embeddings/{model}/{date}.log",
    benchmark:
        "results/benchmarks/embeddings/{model}/{date}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    shell:
        "GDAL_CACHEMAX={params.gdal_cache_mb} python -m landtaxa embed --grid {input.grid:q} --model {input.model:q}"
        " --aligned {input.aligned:q}"
        " --valid {input.valid:q} --out {output.embeddings:q} --min-valid {params.min_valid}"
        " --batch-size {params.batch_size} --block-rows {params.block_rows}"
        " --device {params.device} {params.compile} --threads {threads} 2> {log:q}"


rule series:
    input:
        embeddings=expand(f"{RESULTS}/embeddings/{{{{model}}}}/{{date}}.npz", date=DATES),
    output:
        series=f"{RESULTS}/series/{{model}}.npz",
    params:
        dates=DATES,
        max_missing=config["max_missing"],
    log:
        "logs/series/{model}.log",
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    shell:
        "python -m landtaxa series --embeddings {input.embeddings:q} --dates {params.dates}"
        " --max-missing {params.max_missing} --out {output.series:q} 2> {log:q}"


rule series_train:
    input:
        embeddings=expand(f"{RESULTS}/embeddings/{{{{model}}}}/{{date}}.npz", date=TRAIN_DATES),
    output:
        series=f"{RESULTS}/series/train/{{model}}.npz",
    params:
        dates=TRAIN_DATES,
        max_missing=config["max_missing"],
    log:
        "logs/series_train/{model}.log",
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    shell:
        "python -m landtaxa series --embeddings {input.embeddings:q} --dates {params.dates}"
        " --max-missing {params.max_missing} --out {output.series:q} 2> {log:q}"
