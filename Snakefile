# unetflow: the U-Net of Ronneberger et al. (2015) as a Snakemake workflow.
# Stages live in workflow/rules/*.smk; all logic lives in workflow/unetflow/.

from snakemake.utils import min_version, validate

min_version("9.0")


# The demo's config, unless the command line names config files: then those files and the
# schema's defaults are the whole config, never merged onto the demo's datasets and models.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/augment.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/view.smk"


check_given_files()  # once every rule is defined (common.smk)


rule all:
    input:
        "results/report/metrics.html",
        expand("results/view/{model}/{dataset}.ome.zarr", model=plan.active_models(), dataset=plan.prediction_datasets()),
    default_target: True
