# Data + weight maps -> augmented training samples (Dask), in precomputed mode.


rule augment:
    input:
        data="results/{dataset}/data.zarr",
        weights="results/{dataset}/weights.zarr",
    output:
        store=directory("results/{dataset}/augmented.zarr"),
        preview="results/{dataset}/augment_preview.png",
    params:
        samples=config["augment"]["samples"],
        input_size=SAMPLE_INPUT_SIZE,
        output_size=SAMPLE_OUTPUT_SIZE,
        seed=config["augment"]["seed"],
        settings=json.dumps(config["augment"]["transforms"], sort_keys=True),
        scheduler=config["dask"]["scheduler"],
    threads: workflow.cores
    resources:
        mem_mb=memory_mb(2000, 2),
    log:
        "logs/augment/{dataset}.log",
    benchmark:
        "benchmarks/runs/augment/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.augment --data {input.data} --weights {input.weights} --out {output.store} --preview {output.preview} --samples {params.samples} --input-size {params.input_size} --output-size {params.output_size} --seed {params.seed} --settings '{params.settings}' --scheduler {params.scheduler} --workers {threads} > {log} 2>&1"
