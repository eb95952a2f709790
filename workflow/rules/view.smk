# Outputs for viewers: the raw image with a model's segmentation (and the ground truth) as its
# labels, one OME-Zarr per model and dataset (part of `all`); and, asked for by target, OME-TIFF
# copies for tools without Zarr, e.g. `snakemake --cores 2 results/tiff/small/demo_test.segmentation.ome.tif`.


rule view:
    input:
        data="results/{dataset}/data.zarr",
        segmentation="results/segmentation/{model}/{dataset}.zarr",
    output:
        directory("results/view/{model}/{dataset}.ome.zarr"),
    params:
        upstream=made_with("segment"),  # settings of the inputs (unetflow.plan)
        code=code_of("view"),
        name="{dataset} ({model})",
    log:
        "logs/view/{model}/{dataset}.log",
    benchmark:
        "benchmarks/runs/view/{model}/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.view {input.data:q} {input.segmentation:q} {output:q} --name {params.name:q} > {log:q} 2>&1"


rule tiff:
    input:
        lambda wildcards: plan.tiff_source(wildcards.kind, wildcards.model, wildcards.dataset),  # that kind's store
    output:
        "results/tiff/{model}/{dataset}.{kind}.ome.tif",
    wildcard_constraints:
        kind="probabilities|segmentation",
    params:
        upstream=lambda wildcards: plan.made_with(  # of the probabilities or the segmentation (unetflow.plan)
            "predict" if wildcards.kind == "probabilities" else "segment", model=wildcards.model, dataset=wildcards.dataset),
        code=code_of("tiff"),
    log:
        "logs/tiff/{model}/{dataset}.{kind}.log",
    benchmark:
        "benchmarks/runs/tiff/{model}/{dataset}.{kind}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.tiff {input:q} {output:q} > {log:q} 2>&1"
