# Time-series K-means per model and K, with its metrics (and the truth per tile if given).
import shlex


rule truth:
    input:
        grid=rules.grid.output.grid,
        truth=PLAN.local([PLAN.truth] if PLAN.truth else []),
    output:
        classes=f"{R}/truth_tiles.npz",
    params:
        truth=lambda wc: PLAN.truth or "",
        p=p("truth"),
    log:
        "logs/truth/truth.log",
    conda:
        "../../envs/cluster.yaml"
    resources:
        mem_mb=mem("truth"),
        runtime=runtime("truth"),
        disk_mb=disk("truth"),
    shell:
        "python -m landtaxa truth --grid {input.grid:q} --truth {params.truth:q} --out {output.classes:q}"
        " --params {params.p:q} 2> {log:q}"


rule clusters:
    input:
        grid=rules.grid.output.grid,
        series=f"{R}/series/{{model}}.npz",
        truth=rules.truth.output.classes if PLAN.truth else [],
    output:
        clusters=f"{R}/clusters/{{model}}/k{{k}}.npz",
        metrics=f"{R}/clusters/{{model}}/k{{k}}.json",
        distances=f"{R}/clusters/{{model}}/k{{k}}_distances.npz",
    wildcard_constraints:
        model="|".join(PLAN.embedded),
    params:
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth)}" if PLAN.truth else "",
        p=p("clusters", "model"),
    # one thread: most clusterings take seconds, and one-thread jobs of several K run side by side;
    # for a very large N give it more with --set-threads clusters=8
    threads: 1
    log:
        "logs/clusters/{model}/k{k}.log",
    benchmark:
        f"{R}/benchmarks/clusters/{{model}}/k{{k}}.tsv"
    conda:
        "../../envs/cluster.yaml"
    resources:
        mem_mb=mem("clusters"),
        runtime=runtime("clusters"),
        disk_mb=disk("clusters"),
    shell:
        "python -m landtaxa clusters --grid {input.grid:q} --series {input.series:q} --k {wildcards.k}"
        " --model {wildcards.model} {params.truth} --out {output.clusters:q} --metrics {output.metrics:q}"
        " --distances {output.distances:q} --threads {threads} --params {params.p:q} 2> {log:q}"


# The clustering of the training dates' series, which guides the refinement.
use rule clusters as clusters_train with:
    input:
        grid=rules.grid.output.grid,
        series=f"{R}/series/train/{{model}}.npz",
    output:
        clusters=f"{R}/clusters/train/{{model}}/k{{k}}.npz",
        metrics=f"{R}/clusters/train/{{model}}/k{{k}}.json",
        distances=f"{R}/clusters/train/{{model}}/k{{k}}_distances.npz",
    params:
        truth="",
        p=p("clusters", "model"),
    resources:
        mem_mb=mem("clusters_train"),
        runtime=runtime("clusters_train"),
        disk_mb=disk("clusters_train"),
    log:
        "logs/clusters_train/{model}/k{k}.log",
    benchmark:
        f"{R}/benchmarks/clusters_train/{{model}}/k{{k}}.tsv"


# The members' taxonomies combined into one (K-means on their one-hot labels), with every tile's confidence;
# read through the series of the model whose members it combines (member 0's), like any other model.
rule consensus:
    input:
        grid=rules.grid.output.grid,
        series=f"{R}/series/{PLAN.consensus_of}.npz",
        members=lambda wc: expand(f"{R}/clusters/{{model}}/k{wc.k}.npz", model=PLAN.members[PLAN.consensus_of]),
        truth=rules.truth.output.classes if PLAN.truth else [],
    output:
        clusters=f"{R}/clusters/consensus/k{{k}}.npz",
        metrics=f"{R}/clusters/consensus/k{{k}}.json",
        distances=f"{R}/clusters/consensus/k{{k}}_distances.npz",
        confidence=f"{R}/clusters/consensus/k{{k}}_confidence.npz",
    params:
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth)}" if PLAN.truth else "",
        p=p("consensus"),
    threads: 1
    log:
        "logs/consensus/k{k}.log",
    benchmark:
        f"{R}/benchmarks/consensus/k{{k}}.tsv"
    conda:
        "../../envs/cluster.yaml"
    resources:
        mem_mb=mem("consensus"),
        runtime=runtime("consensus"),
        disk_mb=disk("consensus"),
    shell:
        "python -m landtaxa consensus --grid {input.grid:q} --series {input.series:q} --members {input.members:q}"
        " --k {wildcards.k} --model consensus {params.truth} --out {output.clusters:q} --metrics {output.metrics:q}"
        " --distances {output.distances:q} --confidence {output.confidence:q} --threads {threads}"
        " --params {params.p:q} 2> {log:q}"


rule metrics:
    input:
        metrics=expand(f"{R}/clusters/{{model}}/k{PLAN.k_main}.json", model=PLAN.models),
        members=expand(f"{R}/clusters/{{model}}/k{PLAN.k_main}.npz",
                       model=[m for c in PLAN.chain for m in PLAN.members[c]] if CONSENSUS_RUN else []),
    output:
        metrics=report(f"{R}/metrics.json", caption="../report/metrics.rst", category="Metrics"),
        table=report(f"{R}/metrics.csv", caption="../report/baseline.rst", category="Metrics"),
    params:
        models=PLAN.models,
        members=lambda wc, input: " ".join(["--chain", *PLAN.chain, "--member-labels", *map(shlex.quote, input.members)])
        if CONSENSUS_RUN
        else "",
        candidates=PLAN.main_candidates,
        p=p("metrics"),
    log:
        "logs/metrics/metrics.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=mem("metrics"),
        runtime=runtime("metrics"),
        disk_mb=disk("metrics"),
    shell:
        "python -m landtaxa metrics --inputs {input.metrics:q} --models {params.models} {params.members}"
        " --candidates {params.candidates} --out {output.metrics:q} --table {output.table:q} --params {params.p:q}"
        " 2> {log:q}"
