# The encoders: f^g trained on geographic triplets (Tile2Vec), then each refined model
# fine-tuned from its parent on triplets guided by the parent's clusters.


rule train_geo:
    input:
        grid=rules.grid.output.grid,
        aligned=aligned(TRAIN_DATES),
        valid=valid_fractions(TRAIN_DATES),
    output:
        model=f"{RESULTS}/models/geo.pt",
    params:
        args=train_args("train"),
        encoder=config["encoder"]["name"],
        z_dim=config["encoder"]["z_dim"],
        radius=config["train"]["radius"] or 0,
    threads: 2
    log:
        "logs/train_geo/geo.log",
    benchmark:
        "results/benchmarks/train_geo/geo.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    shell:
        "python -m landtaxa train --grid {input.grid:q} --aligned {input.aligned:q} --valid {input.valid:q}"
        " --out {output.model:q} --encoder {params.encoder} --z-dim {params.z_dim}"
        " --radius {params.radius} {params.args} --threads {threads} 2> {log:q}"


rule refine:
    input:
        grid=rules.grid.output.grid,
        parent=lambda wc: f"{RESULTS}/models/{PARENT[wc.refined]}.pt",
        clusters=lambda wc: refine_clusters(PARENT[wc.refined]),
        aligned=aligned(TRAIN_DATES),
        valid=valid_fractions(TRAIN_DATES),
    output:
        model=f"{RESULTS}/models/{{refined}}.pt",
    params:
        args=train_args("refine"),
    threads: 2
    log:
        "logs/refine/{refined}.log",
    benchmark:
        "results/benchmarks/refine/{refined}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    shell:
        "python -m landtaxa refine --grid {input.grid:q} --parent {input.parent:q}"
        " --clusters {input.clusters:q} --aligned {input.aligned:q} --valid {input.valid:q}"
        " --out {output.model:q} {params.args} --threads {threads} 2> {log:q}"
