# A trained model + data.zarr -> per-class probabilities (overlap-tile).


rule predict:
    input:
        model=model_file,
        data="results/{dataset}/data.zarr",
    output:
        directory("results/predictions/{model}/{dataset}.zarr"),
    params:
        upstream=upstream_of_prediction,  # settings of the inputs (provenance.smk)
        runtime=predict_runtime,
        code=code_of("predict"),
        settings=json.dumps(results_settings("predict"), sort_keys=True),
    threads: workflow.cores
    resources:
        gpu=1,
        mem_mb=memory_mb(4000, 2),
    log:
        "logs/predict/{model}/{dataset}.log",
    benchmark:
        "benchmarks/runs/predict/{model}/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m unetflow.steps.predict {input.model:q} {input.data:q} {output:q} --settings {params.settings:q} --runtime {params.runtime:q} --threads {threads} > {log:q} 2>&1"
