# The stores that predict.parts jobs filled, each renamed to its output once all parts are done.

if PARTS > 1:

    rule merge_predictions:
        input:
            part_flags("results/predictions/{model}/{dataset}.zarr"),
        output:
            directory("results/predictions/{model}/{dataset}.zarr"),
        wildcard_constraints:
            model=one_of(plan.predicted_models()),
        params:
            parts=runtime(PARTS),
            code=code_of("merge"),
        log:
            "logs/merge/predictions/{model}/{dataset}.log",
        conda:
            "../../envs/cpu.yaml"
        shell:
            "python -m unetflow.steps.merge {output:q} --parts {params.parts} > {log:q} 2>&1"

    rule merge_segmentation:  # with dims 3: stitches the parts' blocks and writes the store
        input:
            part_flags("results/segmentation/{model}/{dataset}.zarr"),
        output:
            directory("results/segmentation/{model}/{dataset}.zarr"),
        params:
            parts=runtime(PARTS),
            scheduler=runtime(config["dask"]["scheduler"]),
            code=code_of("merge"),
        threads: workflow.cores
        resources:
            mem_mb=block_memory_mb(1500, 250),
        log:
            "logs/merge/segmentation/{model}/{dataset}.log",
        benchmark:
            "benchmarks/runs/merge_segmentation/{model}/{dataset}.tsv"
        conda:
            "../../envs/cpu.yaml"
        shell:
            "python -m unetflow.steps.merge {output:q} --parts {params.parts} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
