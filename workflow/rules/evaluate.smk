# Segmentation + probabilities + labels -> metrics per slice and dataset.


rule evaluate:
    input:
        data="results/{dataset}/data.zarr",
        predictions="results/predictions/{model}/{dataset}.zarr",
        segmentation="results/segmentation/{model}/{dataset}.zarr",
    output:
        "results/evaluation/{model}/{dataset}.csv",
    params:
        threshold=config["segment"]["threshold"],
    resources:
        mem_mb=memory_mb(2000, 2),
    log:
        "logs/evaluate/{model}/{dataset}.log",
    benchmark:
        "benchmarks/runs/evaluate/{model}/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.evaluate --data {input.data} --predictions {input.predictions} --segmentation {input.segmentation} --out {output} --threshold {params.threshold} --model {wildcards.model} --dataset {wildcards.dataset} > {log} 2>&1"
