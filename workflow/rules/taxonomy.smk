# The taxonomy as maps (GeoTIFF + PNG) and the metrics table of every model.


rule map:
    input:
        grid=rules.grid.output.grid,
        clusters=f"{RESULTS}/clusters/{{model}}/k{K_MAIN}.npz",
    output:
        tif=f"{RESULTS}/maps/{{model}}_clusters.tif",
        png=report(
            f"{RESULTS}/maps/{{model}}_clusters.png",
            caption="../report/cluster_map.rst",
            category="Maps",
            labels={"model": "{model}", "figure": "cluster map"},
        ),
    params:
        title=lambda wc: f"landtaxa taxonomy: {wc.model} model, K={K_MAIN}",
    log:
        "logs/map/{model}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "python -m landtaxa map --grid {input.grid:q} --clusters {input.clusters:q} --title {params.title:q}"
        " --out-tif {output.tif:q} --out-png {output.png:q} 2> {log:q}"


rule metrics:
    input:
        metrics=expand(f"{RESULTS}/clusters/{{model}}/k{K_MAIN}.json", model=MODELS),
    output:
        metrics=report(f"{RESULTS}/metrics.json", caption="../report/metrics.rst", category="Metrics"),
    params:
        models=MODELS,
    log:
        "logs/metrics/metrics.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m landtaxa metrics --inputs {input.metrics:q} --models {params.models}"
        " --out {output.metrics:q} 2> {log:q}"


rule coverage:
    input:
        grid=rules.grid.output.grid,
        valid=valid_fractions(DATES),
    output:
        tif=f"{RESULTS}/maps/coverage.tif",
    params:
        min_valid=config["min_valid"],
    log:
        "logs/coverage/coverage.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m landtaxa coverage --grid {input.grid:q} --valid {input.valid:q}"
        " --min-valid {params.min_valid} --out {output.tif:q} 2> {log:q}"
