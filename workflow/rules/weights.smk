# Labels -> the U-Net weight map of every labelled slice (Dask).


rule weights:
    input:
        "results/{dataset}/data.zarr",
    output:
        store=directory("results/{dataset}/weights.zarr"),
        preview="results/{dataset}/weights_preview.png",
    params:
        upstream=upstream("weights"),  # settings of the inputs (unetflow.plan)
        scheduler=runtime(config["dask"]["scheduler"]),
        code=code_of("weights"),
        settings=as_json(config["weights"]),
        num_classes=config["num_classes"],
        dims=config["dims"],
    threads: workflow.cores
    resources:
        mem_mb=memory_mb(2000, 4),
    log:
        "logs/weights/{dataset}.log",
    benchmark:
        "benchmarks/runs/weights/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.weights {input:q} {output.store:q} --preview {output.preview:q} --settings {params.settings:q} --num-classes {params.num_classes:q} --dims {params.dims:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
