# Time-series K-means per model and K, with its metrics (and the truth per tile if given).


rule truth:
    input:
        grid=rules.grid.output.grid,
        truth=TRUTH or [],
    output:
        classes=f"{RESULTS}/truth_tiles.npz",
    log:
        "logs/truth/truth.log",
    conda:
        "../../envs/cluster.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m landtaxa truth --grid {input.grid:q} --truth {input.truth:q} --out {output.classes:q} 2> {log:q}"


rule clusters:
    input:
        grid=rules.grid.output.grid,
        series=f"{RESULTS}/series/{{model}}.npz",
        truth=rules.truth.output.classes if TRUTH else [],
    output:
        clusters=f"{RESULTS}/clusters/{{model}}/k{{k}}.npz",
        metrics=f"{RESULTS}/clusters/{{model}}/k{{k}}.json",
    params:
        seed=config["seed"],
        n_init=config["cluster"]["n_init"],
        max_iter=config["cluster"]["max_iter"],
        method=config["cluster"]["method"],
        batch_size=config["cluster"]["batch_size"],
        gamma=config["cluster"]["gamma"],
        max_dtw_tiles=config["cluster"]["max_dtw_tiles"],
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth)}" if TRUTH else "",
    # one thread: the demo's and most regions' clusterings take seconds, and one-thread jobs of
    # several K run side by side; for a very large N give it more with --set-threads clusters=8
    threads: 1
    log:
        "logs/clusters/{model}/k{k}.log",
    benchmark:
        "results/benchmarks/clusters/{model}/k{k}.tsv"
    conda:
        "../../envs/cluster.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    shell:
        "OMP_NUM_THREADS={threads} python -m landtaxa clusters --grid {input.grid:q} --series {input.series:q}"
        " --k {wildcards.k} --model {wildcards.model} --seed {params.seed} --n-init {params.n_init}"
        " --max-iter {params.max_iter} --method {params.method} --batch-size {params.batch_size}"
        " --gamma {params.gamma} --max-dtw-tiles {params.max_dtw_tiles} {params.truth} --out {output.clusters:q}"
        " --metrics {output.metrics:q} 2> {log:q}"


rule clusters_train:
    input:
        grid=rules.grid.output.grid,
        series=f"{RESULTS}/series/train/{{model}}.npz",
    output:
        clusters=f"{RESULTS}/clusters/train/{{model}}/k{{k}}.npz",
        metrics=f"{RESULTS}/clusters/train/{{model}}/k{{k}}.json",
    params:
        seed=config["seed"],
        n_init=config["cluster"]["n_init"],
        max_iter=config["cluster"]["max_iter"],
        method=config["cluster"]["method"],
        batch_size=config["cluster"]["batch_size"],
        gamma=config["cluster"]["gamma"],
        max_dtw_tiles=config["cluster"]["max_dtw_tiles"],
    # one thread: the demo's and most regions' clusterings take seconds, and one-thread jobs of
    # several K run side by side; for a very large N give it more with --set-threads clusters=8
    threads: 1
    log:
        "logs/clusters_train/{model}/k{k}.log",
    conda:
        "../../envs/cluster.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    shell:
        "OMP_NUM_THREADS={threads} python -m landtaxa clusters --grid {input.grid:q} --series {input.series:q}"
        " --k {wildcards.k} --model {wildcards.model} --seed {params.seed} --n-init {params.n_init}"
        " --max-iter {params.max_iter} --method {params.method} --batch-size {params.batch_size}"
        " --gamma {params.gamma} --max-dtw-tiles {params.max_dtw_tiles}"
        " --out {output.clusters:q} --metrics {output.metrics:q} 2> {log:q}"
