# Data + weight maps -> augmented training samples (Dask), in precomputed mode: one store per
# sample size, so each model trains on its own tiles (models of one size share it).


rule augment:
    input:
        data="results/{dataset}/data.zarr",
        weights="results/{dataset}/weights.zarr",
    output:
        store=directory("results/{dataset}/augmented/{input_size}-{output_size}.zarr"),
        preview="results/{dataset}/augmented/{input_size}-{output_size}_preview.png",
    wildcard_constraints:
        input_size="[0-9]+(x[0-9]+x[0-9]+)?",
        output_size="[0-9]+(x[0-9]+x[0-9]+)?",
    params:
        upstream=upstream("augment"),  # settings of the inputs (unetflow.plan)
        scheduler=runtime(config["dask"]["scheduler"]),
        code=code_of("augment"),
        settings=as_json(plan.augment_settings()),
    threads: workflow.cores
    resources:
        mem_mb=memory_mb(2000, 2),
    log:
        "logs/augment/{dataset}/{input_size}-{output_size}.log",
    benchmark:
        "benchmarks/runs/augment/{dataset}/{input_size}-{output_size}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.augment --data {input.data:q} --weights {input.weights:q} --out {output.store:q} --preview {output.preview:q} --input-size {wildcards.input_size:q} --output-size {wildcards.output_size:q} --settings {params.settings:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
