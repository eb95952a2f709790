# Probabilities -> objects (seeded watershed or connected components) with the tuned or the fixed
# segment settings, block by block where the data is larger than a block; split like predict.


rule segment:
    input:
        predictions="results/predictions/{model}/{dataset}.zarr",
        tuned=of_model(plan.tuned_settings),  # the tune rule's choice, when segment.settings is tuned
    output:
        store_or_part("results/segmentation/{model}/{dataset}.zarr"),
    params:
        store="results/segmentation/{model}/{dataset}.zarr",
        part=part_of,
        parts=runtime(PARTS),
        upstream=upstream("segment"),  # settings of the inputs (unetflow.plan)
        scheduler=runtime(config["dask"]["scheduler"]),
        code=code_of("segment"),
        dims=config["dims"],
        settings=as_json(plan.segment_settings()),
        blocks=as_json(config["blocks"]),
        tuned=lambda wildcards, input: ["--tuned", input.tuned] if input.tuned else [],
    threads: workflow.cores
    resources:
        mem_mb=block_memory_mb(1000, plan.block_worker_mb("segment")),  # per worker: a block, by method
    log:
        f"logs/segment/{{model}}/{{dataset}}{PART}.log",
    benchmark:
        f"benchmarks/runs/segment/{{model}}/{{dataset}}{PART}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.segment {input.predictions:q} {params.store:q} --part {params.part} --parts {params.parts} --settings {params.settings:q} {params.tuned:q} --blocks {params.blocks:q} --dims {params.dims:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
