# Probabilities -> objects (seeded watershed or connected components).


rule segment:
    input:
        "results/predictions/{model}/{dataset}.zarr",
    output:
        directory("results/segmentation/{model}/{dataset}.zarr"),
    params:
        upstream=upstream_of_segmentation,  # settings of the inputs (provenance.smk)
        scheduler=runtime(config["dask"]["scheduler"]),
        code=code_of("segment"),
        settings=json.dumps(config["segment"], sort_keys=True),
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
        "python -m unetflow.steps.segment {input:q} {output:q} --settings {params.settings:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
