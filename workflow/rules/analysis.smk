# Reading the taxonomy, per model and K: series PCA map, semantic graph and projections (analysis);
# representatives and interpolation, which show the tiles themselves (representatives); agreement
# with other K-means seeds (stability); the kind of every tile on every date (evolution); and the
# metrics against K (k_choice).


rule analysis:
    input:
        grid=rules.grid.output.grid,
        series=series_of,
        clusters=f"{R}/clusters/{{model}}/k{{k}}.npz",
    output:
        series_tif=f"{R}/analysis/{{model}}/k{{k}}/series_pca.tif",
        series_png=report_figure("analysis", "series_pca.png", "series_pca", "Maps", "series PCA colours"),
        graph=report_figure("analysis", "graph.png", "graph", "Clusters", "semantic graph"),
        graphml=f"{R}/analysis/{{model}}/k{{k}}/graph.graphml",
        edges=report_figure("analysis", "graph_edges.csv", "graph", "Clusters", "semantic graph edges"),
        projections=report_figure("analysis", "projections.png", "projections", "Clusters", "t-SNE and MDS"),
    params:
        out_dir=lambda wc, output: os.path.dirname(output.series_tif),
        p=p("analysis"),
    threads: 1
    log:
        "logs/analysis/{model}/k{k}.log",
    benchmark:
        f"{R}/benchmarks/analysis/{{model}}/k{{k}}.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("analysis"),
        runtime=runtime("analysis"),
        disk_mb=disk("analysis"),
    shell:
        "python -m landtaxa analysis --grid {input.grid:q} --series {input.series:q} --clusters {input.clusters:q}"
        " --model {wildcards.model} --out-dir {params.out_dir:q} --threads {threads} --params {params.p:q}"
        " 2> {log:q}"


rule representatives:
    input:
        grid=rules.grid.output.grid,
        series=series_of,
        clusters=f"{R}/clusters/{{model}}/k{{k}}.npz",
        distances=f"{R}/clusters/{{model}}/k{{k}}_distances.npz",
        aligned=PLAN.aligned(PLAN.dates),
    output:
        png=report_figure("analysis", "representatives.png", "representatives", "Clusters", "representatives"),
        csv=f"{R}/analysis/{{model}}/k{{k}}/representatives.csv",
        interpolation=report_figure("analysis", "interpolation.png", "interpolation", "Clusters", "interpolation"),
        interpolation_csv=f"{R}/analysis/{{model}}/k{{k}}/interpolation.csv",
    params:
        out_dir=lambda wc, output: os.path.dirname(output.csv),
        p=p("representatives"),
    log:
        "logs/representatives/{model}/k{k}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("representatives"),
        runtime=runtime("representatives"),
        disk_mb=disk("representatives"),
    shell:
        "python -m landtaxa representatives --grid {input.grid:q} --series {input.series:q}"
        " --clusters {input.clusters:q} --distances {input.distances:q} --aligned {input.aligned:q}"
        " --model {wildcards.model} --out-dir {params.out_dir:q} --params {params.p:q} 2> {log:q}"


rule stability:
    input:
        series=series_of,
        clusters=f"{R}/clusters/{{model}}/k{{k}}.npz",
    output:
        json=f"{R}/analysis/{{model}}/k{{k}}/stability.json",
        png=report_figure("analysis", "stability.png", "stability", "Clusters", "stability"),
    params:
        p=p("stability"),
    threads: 1
    log:
        "logs/stability/{model}/k{k}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("stability"),
        runtime=runtime("stability"),
        disk_mb=disk("stability"),
    shell:
        "python -m landtaxa stability --series {input.series:q} --clusters {input.clusters:q}"
        " --model {wildcards.model} --out {output.json:q} --png {output.png:q} --threads {threads}"
        " --params {params.p:q} 2> {log:q}"


rule evolution:
    input:
        grid=rules.grid.output.grid,
        series=series_of,
        clusters=f"{R}/clusters/{{model}}/k{{k}}.npz",
    output:
        maps=expand(f"{R}/evolution/{{{{model}}}}/k{{{{k}}}}/{{date}}.tif", date=PLAN.dates),
        kinds=report_figure("evolution", "kinds.tif", "kinds_tif", "Evolution", "kinds by date (GeoTIFF)"),
        kinds_qml=f"{R}/evolution/{{model}}/k{{k}}/kinds.qml",
        labels=f"{R}/evolution/{{model}}/k{{k}}/labels.parquet",
        transitions=report_figure("evolution", "transitions.csv", "transitions", "Evolution", "transition table"),
        transitions_png=report_figure("evolution", "transitions.png", "transitions", "Evolution", "transition matrices"),
        change=f"{R}/evolution/{{model}}/k{{k}}/change.tif",
        png=report_figure("evolution", "evolution.png", "evolution", "Evolution", "kinds and changes by date"),
        summary=f"{R}/evolution/{{model}}/k{{k}}/summary.json",
    params:
        out_dir=lambda wc, output: os.path.dirname(output.labels),
        p=p("evolution"),
    log:
        "logs/evolution/{model}/k{k}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("evolution"),
        runtime=runtime("evolution"),
        disk_mb=disk("evolution"),
    shell:
        "python -m landtaxa evolution --grid {input.grid:q} --series {input.series:q} --clusters {input.clusters:q}"
        " --model {wildcards.model} --labels {output.labels:q} --out-dir {params.out_dir:q} --params {params.p:q}"
        " 2> {log:q}"


rule k_choice:
    input:
        metrics=expand(f"{R}/clusters/{{{{model}}}}/k{{k}}.json", k=PLAN.k_list),
    output:
        png=report(
            f"{R}/analysis/{{model}}/k_choice.png",
            caption="../report/k_choice.rst",
            category="Choice of K",
            labels={"model": "{model}", "figure": "metrics against K"},
        ),
        csv=report(
            f"{R}/analysis/{{model}}/k_choice.csv",
            caption="../report/k_choice.rst",
            category="Choice of K",
            labels={"model": "{model}", "figure": "table"},
        ),
    log:
        "logs/k_choice/{model}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("k_choice"),
        runtime=runtime("k_choice"),
        disk_mb=disk("k_choice"),
    shell:
        "python -m landtaxa k_choice --inputs {input.metrics:q} --model {wildcards.model}"
        " --png {output.png:q} --csv {output.csv:q} 2> {log:q}"


rule kinds:
    input:
        grid=rules.grid.output.grid,
        series=series_of,
        clusters=f"{R}/clusters/{{model}}/k{{k}}.npz",
        stability=rules.stability.output.json,
        kinds=rules.evolution.output.labels,
    output:
        csv=report_figure("analysis", "kinds.csv", "kinds", "Clusters", "kinds table"),
        json=f"{R}/analysis/{{model}}/k{{k}}/kinds.json",
    log:
        "logs/kinds/{model}/k{k}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("kinds"),
        runtime=runtime("kinds"),
        disk_mb=disk("kinds"),
    shell:
        "python -m landtaxa kinds --grid {input.grid:q} --series {input.series:q} --clusters {input.clusters:q}"
        " --stability {input.stability:q} --kinds {input.kinds:q} --model {wildcards.model} --csv {output.csv:q}"
        " --json {output.json:q} 2> {log:q}"
