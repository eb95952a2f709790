# A trained model + data.zarr -> per-class probabilities (overlap-tile).


rule predict:
    input:
        model="results/models/{model}/model.pt",
        data="results/{dataset}/data.zarr",
    output:
        directory("results/predictions/{model}/{dataset}.zarr"),
    params:
        upstream=upstream_of_prediction,  # settings of the inputs (provenance.smk)
        tile=config["predict"]["tile"],
        batch_size=config["predict"]["batch_size"],
        device=config["predict"]["device"],
        precision=config["predict"]["precision"],
        dtype=config["predict"]["dtype"],
        tta=["--test-time-augmentation"] if config["predict"]["test_time_augmentation"] else [],
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
        "python -m unetflow.predict {input.model:q} {input.data:q} {output:q} --tile {params.tile:q} --batch-size {params.batch_size:q} --device {params.device:q} --precision {params.precision:q} --dtype {params.dtype:q} {params.tta:q} --threads {threads} > {log:q} 2>&1"
