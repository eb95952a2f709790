# A trained model + data.zarr -> per-class probabilities (overlap-tile); one job per stack, or
# predict.parts jobs over slice ranges that fill one store (merged by merge.smk). An ensemble's
# probabilities are the mean of its members' (models.<name>.ensemble, or its folds).


rule predict:
    input:
        model=of_model(plan.model_file),
        data="results/{dataset}/data.zarr",
    output:
        store_or_part("results/predictions/{model}/{dataset}.zarr"),
    wildcard_constraints:
        model=one_of(plan.predicted_models()),
    params:
        store="results/predictions/{model}/{dataset}.zarr",
        part=part_of,
        parts=runtime(PARTS),
        upstream=upstream("predict"),  # settings of the inputs (unetflow.plan)
        runtime=runtime(as_json(plan.runtime_settings("predict"))),
        code=code_of("predict"),
        settings=as_json(plan.results_settings("predict")),
    threads: workflow.cores
    resources:
        gpu=1,
        mem_mb=memory_mb(4000, 2),
    log:
        f"logs/predict/{{model}}/{{dataset}}{PART}.log",
    benchmark:
        f"benchmarks/runs/predict/{{model}}/{{dataset}}{PART}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m unetflow.steps.predict {input.model:q} {input.data:q} {params.store:q} --part {params.part} --parts {params.parts} --settings {params.settings:q} --runtime {params.runtime:q} --threads {threads} > {log:q} 2>&1"


rule ensemble:
    input:
        lambda wildcards: plan.member_predictions(wildcards.model, wildcards.dataset),
    output:
        directory("results/predictions/{model}/{dataset}.zarr"),
    wildcard_constraints:
        model=one_of(plan.ensembles()),
    params:
        upstream=upstream("predict"),  # the members' provenance (unetflow.plan)
        code=code_of("ensemble"),
        scheduler=runtime(config["dask"]["scheduler"]),
    threads: workflow.cores
    resources:
        mem_mb=block_memory_mb(1000, 250),
    log:
        "logs/ensemble/{model}/{dataset}.log",
    benchmark:
        "benchmarks/runs/ensemble/{model}/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.ensemble {input:q} --out {output:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
