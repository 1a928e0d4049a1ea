# The encoders: f^g trained on geographic triplets (Tile2Vec), each refined model fine-tuned
# from its parent on triplets guided by the parent's clusters, and the baseline's (nothing to learn).


rule train:
    input:
        grid=rules.grid.output.grid,
        aligned=PLAN.aligned(PLAN.train_dates),
        valid=PLAN.valid(PLAN.train_dates),
    output:
        model=f"{R}/models/geo.pt",
    params:
        p=p("train"),
    threads: threads("train")
    log:
        "logs/train/geo.log",
    benchmark:
        f"{R}/benchmarks/train/geo.tsv"
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
        model=f"{R}/models/{PLAN.baseline}.pt",
    params:
        encoder=PLAN.encoder_of(PLAN.baseline),
    log:
        f"logs/untrained/{PLAN.baseline}.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=mem("untrained"),
        runtime=runtime("untrained"),
        disk_mb=disk("untrained"),
    shell:
        "python -m landtaxa untrained --grid {input.grid:q} --encoder {params.encoder} --out {output.model:q}"
        " 2> {log:q}"


# The geographic encoder again from train.second_seed (its refinement follows through `refine`).
use rule train as train_second_seed with:
    output:
        model=f"{R}/models/geo{PLAN.second_seed_suffix}.pt",
    params:
        p=PLAN.params("train", f"geo{PLAN.second_seed_suffix}"),
    log:
        f"logs/train/geo{PLAN.second_seed_suffix}.log",
    benchmark:
        f"{R}/benchmarks/train/geo{PLAN.second_seed_suffix}.tsv"
