# The built-in synthetic demo region (images: demo): granules, dates and a ground truth.


rule demo:
    output:
        images=PLAN.inventory["path"].tolist() if PLAN.demo else [],
        truth=f"{R}/demo/truth.tif",
    params:
        out=lambda wc, output: os.path.dirname(output.truth),
        p=p("demo"),
    log:
        "logs/demo/demo.log",
    conda:
        "../../envs/io.yaml"
    resources:
        mem_mb=mem("demo"),
        runtime=runtime("demo"),
        disk_mb=disk("demo"),
    shell:
        "python -m landtaxa demo --out {params.out:q} --params {params.p:q} 2> {log:q}"
