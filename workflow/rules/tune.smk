# Probabilities of the validate_on datasets (a model with folds: of each fold's held-out slab by
# its fold's model) -> the segmentation settings segment uses (segment.settings: tuned), chosen
# by a sweep of the tune grid.


rule tune:
    input:
        unpack(of_model(plan.tuning_inputs)),
    output:
        settings="results/tuning/{model}/segment.json",
        table="results/tuning/{model}/sweep.csv",
    params:
        upstream=upstream("tune"),  # settings of the inputs (unetflow.plan)
        code=code_of("tune"),
        dims=config["dims"],
        settings=as_json(config["tune"]),
        blocks=as_json(config["blocks"]),
        scheduler=runtime(config["dask"]["scheduler"]),
    threads: workflow.cores
    resources:
        mem_mb=block_memory_mb(1000, plan.block_worker_mb("tune")),  # per worker: a block, by method
    log:
        "logs/tune/{model}.log",
    benchmark:
        "benchmarks/runs/tune/{model}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.tune --data {input.data:q} --predictions {input.predictions:q} --settings {params.settings:q} --out {output.settings:q} --table {output.table:q} --blocks {params.blocks:q} --dims {params.dims:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
