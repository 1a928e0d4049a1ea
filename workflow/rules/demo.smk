# The built-in synthetic demo region (images: demo): granules, dates and a ground truth.


rule demo:
    output:
        images=[p for p in INVENTORY["path"]] if IS_DEMO else [],
        truth=str(truth_path(DEMO_DIR)),
    params:
        out=lambda wc, output: os.path.dirname(os.path.dirname(output.images[0])),
        spec=lambda wc: demo_spec(),
        change=lambda wc: (
            "" if demo_spec().change_date is None else f"--change-date {demo_spec().change_date}"
        ),
    log:
        "logs/demo/demo.log",
    conda:
        "../../envs/io.yaml"
    shell:
        "python -m landtaxa demo --out {params.out:q} --size {params.spec.size} --n-dates {params.spec.n_dates}"
        " --year {params.spec.year} --granules {params.spec.granules} --overlap {params.spec.overlap}"
        " --pixel-size {params.spec.pixel_size} --bands {params.spec.bands}"
        " {params.change} --seed {params.spec.seed} 2> {log}"
