# The taxonomy as maps (GeoTIFF + PNG + legend) per model and K, and the coverage of the dates.


rule map:
    input:
        grid=rules.grid.output.grid,
        clusters=f"{R}/clusters/{{model}}/k{PLAN.k_main}.npz",
        kinds=f"{R}/evolution/{{model}}/k{PLAN.k_main}/labels.parquet",
    output:
        tif=f"{R}/maps/{{model}}_clusters.tif",
        names=f"{R}/maps/{{model}}_clusters.tif.aux.xml",
        qml=report(
            f"{R}/maps/{{model}}_clusters.qml",
            caption="../report/qml.rst",
            category="Maps",
            labels={"model": "{model}", "figure": "QGIS style"},
        ),
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
        mem_mb=mem("map"),
        runtime=runtime("map"),
        disk_mb=disk("map"),
    shell:
        "python -m landtaxa map --grid {input.grid:q} --clusters {input.clusters:q} --kinds {input.kinds:q}"
        " --model {wildcards.model}"
        " --tif {output.tif:q} --png {output.png:q} --legend {output.legend:q} 2> {log:q}"


# The maps of the other K of a sweep (analysis.all_k) beside that K's analysis.
use rule map as map_k with:
    input:
        grid=rules.grid.output.grid,
        clusters=f"{R}/clusters/{{model}}/k{{k}}.npz",
        kinds=f"{R}/evolution/{{model}}/k{{k}}/labels.parquet",
    output:
        tif=f"{R}/analysis/{{model}}/k{{k}}/clusters.tif",
        names=f"{R}/analysis/{{model}}/k{{k}}/clusters.tif.aux.xml",
        qml=f"{R}/analysis/{{model}}/k{{k}}/clusters.qml",
        png=report(
            f"{R}/analysis/{{model}}/k{{k}}/clusters.png",
            caption="../report/cluster_map.rst",
            category="Maps",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "cluster map"},
        ),
        legend=f"{R}/analysis/{{model}}/k{{k}}/legend.png",
    resources:
        mem_mb=mem("map_k"),
        runtime=runtime("map_k"),
        disk_mb=disk("map_k"),
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
        mem_mb=mem("coverage"),
        runtime=runtime("coverage"),
        disk_mb=disk("coverage"),
    shell:
        "python -m landtaxa coverage --grid {input.grid:q} --valid {input.valid:q} --out {output.tif:q}"
        " --params {params.p:q} 2> {log:q}"


rule tiles:
    input:
        grid=rules.grid.output.grid,
        coverage=rules.coverage.output.tif,
        clusters=expand(f"{R}/clusters/{{model}}/k{PLAN.k_main}.npz", model=PLAN.models),
    output:
        parquet=report(f"{R}/tiles.parquet", caption="../report/tiles.rst", category="Tables"),
    params:
        models=PLAN.models,
    log:
        "logs/tiles/tiles.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("tiles"),
        runtime=runtime("tiles"),
        disk_mb=disk("tiles"),
    shell:
        "python -m landtaxa tiles --grid {input.grid:q} --coverage {input.coverage:q} --clusters {input.clusters:q}"
        " --models {params.models} --out {output.parquet:q} 2> {log:q}"


rule confidence:
    input:
        grid=rules.grid.output.grid,
        confidence=f"{R}/clusters/consensus/k{PLAN.k_main}_confidence.npz",
    output:
        tif=report(f"{R}/maps/consensus_confidence.tif", caption="../report/confidence.rst", category="Maps",
                   labels={"model": "consensus", "figure": "confidence (GeoTIFF)"}),
    log:
        "logs/confidence/confidence.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("confidence"),
        runtime=runtime("confidence"),
        disk_mb=disk("confidence"),
    shell:
        "python -m landtaxa confidence --grid {input.grid:q} --confidence {input.confidence:q} --out {output.tif:q}"
        " 2> {log:q}"


# The page opens on the run's main model (metrics.json names it): every candidate's files are its inputs.
rule viewer:
    input:
        grid=rules.grid.output.grid,
        metrics=rules.metrics.output.metrics,
        clusters=expand(f"{R}/clusters/{{model}}/k{PLAN.k_main}.npz", model=PLAN.main_candidates),
        kinds=expand(f"{R}/evolution/{{model}}/k{PLAN.k_main}/labels.parquet", model=PLAN.main_candidates),
        representatives=expand(f"{R}/analysis/{{model}}/k{PLAN.k_main}/representatives.csv",
                               model=PLAN.main_candidates),
        aligned=PLAN.aligned(PLAN.dates),
    output:
        html=report(f"{R}/viewer/index.html", caption="../report/viewer.rst", category="Viewer"),
    params:
        models=PLAN.main_candidates,
        p=p("viewer"),
    log:
        "logs/viewer/viewer.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("viewer"),
        runtime=runtime("viewer"),
        disk_mb=disk("viewer"),
    shell:
        "python -m landtaxa viewer --grid {input.grid:q} --metrics {input.metrics:q} --clusters {input.clusters:q}"
        " --kinds {input.kinds:q} --representatives {input.representatives:q} --aligned {input.aligned:q}"
        " --model {params.models} --out {output.html:q} --params {params.p:q} 2> {log:q}"
