# Segmentation + probabilities + labels -> metrics per slice and dataset (block by block where large).


rule evaluate:
    input:
        data="results/{dataset}/data.zarr",
        predictions="results/predictions/{model}/{dataset}.zarr",
        segmentation="results/segmentation/{model}/{dataset}.zarr",
    output:
        "results/evaluation/{model}/{dataset}.csv",
    params:
        upstream=upstream("evaluate"),  # settings of the inputs (unetflow.plan)
        code=code_of("evaluate"),
        dims=config["dims"],
        blocks=runtime(as_json(config["blocks"])),  # blockwise scores are the whole's
        scheduler=runtime(config["dask"]["scheduler"]),
    threads: workflow.cores
    resources:
        mem_mb=block_memory_mb(1500, 250),
    log:
        "logs/evaluate/{model}/{dataset}.log",
    benchmark:
        "benchmarks/runs/evaluate/{model}/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.evaluate --data {input.data:q} --predictions {input.predictions:q} --segmentation {input.segmentation:q} --out {output:q} --model {wildcards.model:q} --dataset {wildcards.dataset:q} --dims {params.dims:q} --blocks {params.blocks:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
