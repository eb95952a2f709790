# Probabilities -> objects (seeded watershed or connected components).


rule segment:
    input:
        "results/predictions/{model}/{dataset}.zarr",
    output:
        directory("results/segmentation/{model}/{dataset}.zarr"),
    params:
        upstream=upstream_of_segmentation,  # settings of the inputs (provenance.smk)
        method=config["segment"]["method"],
        threshold=config["segment"]["threshold"],
        seeds=config["segment"]["seeds"],
        h=config["segment"]["h"],
        min_size=config["segment"]["min_size"],
        scheduler=config["dask"]["scheduler"],
    threads: workflow.cores
    resources:
        mem_mb=memory_mb(2000, 4),
    log:
        "logs/segment/{model}/{dataset}.log",
    benchmark:
        "benchmarks/runs/segment/{model}/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.segment {input:q} {output:q} --method {params.method:q} --threshold {params.threshold:q} --seeds {params.seeds:q} --h {params.h:q} --min-size {params.min_size:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
