# The taxonomy as maps (GeoTIFF + PNG + legend) per model and K, and the coverage of the dates.


rule map:
    input:
        grid=rules.grid.output.grid,
        clusters=f"{R}/clusters/{{model}}/k{PLAN.k_main}.npz",
    output:
        tif=f"{R}/maps/{{model}}_clusters.tif",
        png=report(
            f"{R}/maps/{{model}}_clusters.png",
            caption="../report/cluster_map.rst",
            category="Maps",
            labels={"model": "{model}", "figure": "cluster map"},
        ),
        legend=report(
            f"{R}/maps/{{model}}_legend.png",
            caption="../report/legend.rst",
            category="Maps",
            labels={"model": "{model}", "figure": "legend"},
        ),
    log:
        "logs/map/{model}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "python -m landtaxa map --grid {input.grid:q} --clusters {input.clusters:q} --model {wildcards.model}"
        " --tif {output.tif:q} --png {output.png:q} --legend {output.legend:q} 2> {log:q}"


# The maps of the other K of a sweep (analysis.all_k) beside that K's analysis.
use rule map as map_k with:
    input:
        grid=rules.grid.output.grid,
        clusters=f"{R}/clusters/{{model}}/k{{k}}.npz",
    output:
        tif=f"{R}/analysis/{{model}}/k{{k}}/clusters.tif",
        png=report(
            f"{R}/analysis/{{model}}/k{{k}}/clusters.png",
            caption="../report/cluster_map.rst",
            category="Maps",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "cluster map"},
        ),
        legend=f"{R}/analysis/{{model}}/k{{k}}/legend.png",
    log:
        "logs/map_k/{model}/k{k}.log",


rule coverage:
    input:
        grid=rules.grid.output.grid,
        valid=PLAN.valid(PLAN.dates),
    output:
        tif=f"{R}/maps/coverage.tif",
    params:
        p=p("coverage"),
    log:
        "logs/coverage/coverage.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m landtaxa coverage --grid {input.grid:q} --valid {input.valid:q} --out {output.tif:q}"
        " --params {params.p:q} 2> {log:q}"
