# Reading the taxonomy: per model and K, maps, representatives, interpolation, semantic graph,
# projections and stability (analysis); the kind of every tile on every date (evolution); and
# the metrics against K (k_choice).


rule analysis:
    input:
        grid=rules.grid.output.grid,
        series=f"{RESULTS}/series/{{model}}.npz",
        clusters=f"{RESULTS}/clusters/{{model}}/k{{k}}.npz",
        aligned=aligned(DATES),
    output:
        tif=f"{RESULTS}/analysis/{{model}}/k{{k}}/clusters.tif",
        png=f"{RESULTS}/analysis/{{model}}/k{{k}}/clusters.png",
        legend=report(
            f"{RESULTS}/analysis/{{model}}/k{{k}}/legend.png",
            caption="../report/legend.rst",
            category="Maps",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "legend"},
        ),
        series_tif=f"{RESULTS}/analysis/{{model}}/k{{k}}/series_pca.tif",
        series_png=report(
            f"{RESULTS}/analysis/{{model}}/k{{k}}/series_pca.png",
            caption="../report/series_pca.rst",
            category="Maps",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "series PCA colours"},
        ),
        representatives=report(
            f"{RESULTS}/analysis/{{model}}/k{{k}}/representatives.png",
            caption="../report/representatives.rst",
            category="Clusters",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "representatives"},
        ),
        representatives_csv=f"{RESULTS}/analysis/{{model}}/k{{k}}/representatives.csv",
        interpolation=report(
            f"{RESULTS}/analysis/{{model}}/k{{k}}/interpolation.png",
            caption="../report/interpolation.rst",
            category="Clusters",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "interpolation"},
        ),
        interpolation_csv=f"{RESULTS}/analysis/{{model}}/k{{k}}/interpolation.csv",
        graph=report(
            f"{RESULTS}/analysis/{{model}}/k{{k}}/graph.png",
            caption="../report/graph.rst",
            category="Clusters",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "semantic graph"},
        ),
        graphml=f"{RESULTS}/analysis/{{model}}/k{{k}}/graph.graphml",
        edges=report(
            f"{RESULTS}/analysis/{{model}}/k{{k}}/graph_edges.csv",
            caption="../report/graph.rst",
            category="Clusters",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "semantic graph edges"},
        ),
        projections=report(
            f"{RESULTS}/analysis/{{model}}/k{{k}}/projections.png",
            caption="../report/projections.rst",
            category="Clusters",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "t-SNE and MDS"},
        ),
        stability=report(
            f"{RESULTS}/analysis/{{model}}/k{{k}}/stability.png",
            caption="../report/stability.rst",
            category="Clusters",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "stability"},
        ),
        stability_json=f"{RESULTS}/analysis/{{model}}/k{{k}}/stability.json",
    params:
        out_dir=lambda wc, output: os.path.dirname(output.tif),
        seed=config["seed"],
        a=config["analysis"],
        c=config["cluster"],
        interpolate=opt(config["analysis"]["interpolate"]),
        rgb_bands=opt(config["analysis"]["rgb_bands"]),
        weights=" ".join(str(w) for w in config["analysis"]["weights"]),
    threads: 1
    log:
        "logs/analysis/{model}/k{k}.log",
    benchmark:
        "results/benchmarks/analysis/{model}/k{k}.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    shell:
        "OMP_NUM_THREADS={threads} python -m landtaxa analysis --grid {input.grid:q} --series {input.series:q}"
        " --clusters {input.clusters:q} --aligned {input.aligned:q} --model {wildcards.model} --seed {params.seed}"
        " --representatives {params.a[representatives]} --interpolate {params.interpolate}"
        " --weights {params.weights} --projection-tiles {params.a[projection_tiles]}"
        " --restarts {params.a[restarts]} --rgb-bands {params.rgb_bands} --n-init {params.c[n_init]}"
        " --max-iter {params.c[max_iter]} --method {params.c[method]} --batch-size {params.c[batch_size]}"
        " --gamma {params.c[gamma]} --max-dtw-tiles {params.c[max_dtw_tiles]} --out-dir {params.out_dir:q}"
        " 2> {log:q}"


rule evolution:
    input:
        grid=rules.grid.output.grid,
        series=f"{RESULTS}/series/{{model}}.npz",
        clusters=f"{RESULTS}/clusters/{{model}}/k{{k}}.npz",
    output:
        maps=expand(f"{RESULTS}/evolution/{{{{model}}}}/k{{{{k}}}}/{{date}}.tif", date=DATES),
        labels=f"{RESULTS}/evolution/{{model}}/k{{k}}/labels.parquet",
        transitions=report(
            f"{RESULTS}/evolution/{{model}}/k{{k}}/transitions.csv",
            caption="../report/transitions.rst",
            category="Evolution",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "transition table"},
        ),
        transitions_png=report(
            f"{RESULTS}/evolution/{{model}}/k{{k}}/transitions.png",
            caption="../report/transitions.rst",
            category="Evolution",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "transition matrices"},
        ),
        change=f"{RESULTS}/evolution/{{model}}/k{{k}}/change.tif",
        png=report(
            f"{RESULTS}/evolution/{{model}}/k{{k}}/evolution.png",
            caption="../report/evolution.rst",
            category="Evolution",
            subcategory="{model}",
            labels={"model": "{model}", "K": "{k}", "figure": "kinds and changes by date"},
        ),
        summary=f"{RESULTS}/evolution/{{model}}/k{{k}}/summary.json",
    params:
        out_dir=lambda wc, output: os.path.dirname(output.labels),
        merge_overlap=config["analysis"]["merge_overlap"],
    log:
        "logs/evolution/{model}/k{k}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    shell:
        "python -m landtaxa evolution --grid {input.grid:q} --series {input.series:q} --clusters {input.clusters:q}"
        " --model {wildcards.model} --merge-overlap {params.merge_overlap} --labels {output.labels:q}"
        " --out-dir {params.out_dir:q} 2> {log:q}"


rule k_choice:
    input:
        metrics=expand(f"{RESULTS}/clusters/{{{{model}}}}/k{{k}}.json", k=K_LIST),
    output:
        png=report(
            f"{RESULTS}/analysis/{{model}}/k_choice.png",
            caption="../report/k_choice.rst",
            category="Choice of K",
            labels={"model": "{model}", "figure": "metrics against K"},
        ),
        csv=report(
            f"{RESULTS}/analysis/{{model}}/k_choice.csv",
            caption="../report/k_choice.rst",
            category="Choice of K",
            labels={"model": "{model}", "figure": "table"},
        ),
    log:
        "logs/k_choice/{model}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m landtaxa kchoice --inputs {input.metrics:q} --model {wildcards.model}"
        " --out-png {output.png:q} --out-csv {output.csv:q} 2> {log:q}"
