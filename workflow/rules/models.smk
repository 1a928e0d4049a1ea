# The encoders: f^g trained on geographic triplets (Tile2Vec) once per member (geo, geo_m1, ...: member i from
# seed + 1000 i), each refined model fine-tuned from its parent on triplets guided by the parent's clusters, and
# the baselines' (nothing to learn).


rule train:
    input:
        grid=rules.grid.output.grid,
        aligned=PLAN.aligned(PLAN.train_dates),
        valid=PLAN.valid(PLAN.train_dates),
    output:
        model=f"{R}/models/{{geo}}.pt",
    wildcard_constraints:
        geo="|".join(PLAN.geo_members),
    params:
        p=p("train", "geo"),
    threads: threads("train")
    log:
        "logs/train/{geo}.log",
    benchmark:
        f"{R}/benchmarks/train/{{geo}}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
        mem_mb=mem("train"),
        gpu_mem_mb=gpu_mem("train"),
        runtime=runtime("train"),
        disk_mb=disk("train"),
    shell:
        "python -m landtaxa train --grid {input.grid:q} --aligned {input.aligned:q} --valid {input.valid:q}"
        " --out {output.model:q} --threads {threads} --params {params.p:q} 2> {log:q}"


rule refine:
    input:
        grid=rules.grid.output.grid,
        parent=lambda wc: f"{R}/models/{PLAN.parents[wc.refined]}.pt",
        clusters=lambda wc: PLAN.refine_clusters(wc.refined),
        aligned=PLAN.aligned(PLAN.train_dates),
        valid=PLAN.valid(PLAN.train_dates),
    output:
        model=f"{R}/models/{{refined}}.pt",
    params:
        p=p("refine", "refined"),
    threads: threads("refine")
    log:
        "logs/refine/{refined}.log",
    benchmark:
        f"{R}/benchmarks/refine/{{refined}}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
        mem_mb=mem("refine"),
        gpu_mem_mb=gpu_mem("refine"),
        runtime=runtime("refine"),
        disk_mb=disk("refine"),
    shell:
        "python -m landtaxa refine --grid {input.grid:q} --parent {input.parent:q} --clusters {input.clusters:q}"
        " --aligned {input.aligned:q} --valid {input.valid:q} --out {output.model:q} --threads {threads}"
        " --params {params.p:q} 2> {log:q}"


rule untrained:
    input:
        grid=rules.grid.output.grid,
    output:
        model=f"{R}/models/{{baseline}}.pt",
    wildcard_constraints:
        baseline="|".join(PLAN.baselines),
    params:
        encoder=lambda wc: PLAN.encoder_of(wc.baseline),
    log:
        "logs/untrained/{baseline}.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=mem("untrained"),
        runtime=runtime("untrained"),
        disk_mb=disk("untrained"),
    shell:
        "python -m landtaxa untrained --grid {input.grid:q} --encoder {params.encoder} --out {output.model:q}"
        " 2> {log:q}"
