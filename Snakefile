# landtaxa: unsupervised spatio-temporal land taxonomy from satellite image sequences.
# With no arguments, `snakemake --cores N` runs the built-in synthetic demo region.
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/tiling.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/embeddings.smk"
include: "workflow/rules/clusters.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        PLAN.final_outputs(),
