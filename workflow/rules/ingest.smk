# Raw stacks -> results/{dataset}/data.zarr (validated OME-Zarr, physical scale, pyramids).


rule ingest:
    input:
        unpack(of_dataset(plan.raw_inputs)),
    output:
        directory("results/{dataset}/data.zarr"),
    params:
        upstream=upstream("ingest"),  # settings of the inputs (unetflow.plan)
        code=code_of("ingest"),
        images=lambda wildcards: plan.dataset(wildcards.dataset)["images"],
        labels=of_dataset(plan.labels_option),
        label_kind=lambda wildcards: plan.dataset(wildcards.dataset)["label_kind"],
        num_classes=config["num_classes"],
        dims=config["dims"],
        ngff=config["ngff"],
        image_options=of_dataset(plan.image_options),
        voxel_size=lambda wildcards: as_json(plan.dataset(wildcards.dataset)["voxel_size"]),
    resources:
        mem_mb=memory_mb(2000, 2),
    log:
        "logs/ingest/{dataset}.log",
    benchmark:
        "benchmarks/runs/ingest/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.ingest --images {params.images:q} {params.labels:q} --out {output:q} --label-kind {params.label_kind:q} --num-classes {params.num_classes:q} {params.image_options:q} --voxel-size {params.voxel_size:q} --dims {params.dims:q} --ngff {params.ngff:q} > {log:q} 2>&1"
