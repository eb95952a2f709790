# Probabilities -> objects (seeded watershed or connected components); split like predict.


rule segment:
    input:
        "results/predictions/{model}/{dataset}.zarr",
    output:
        store_or_part("results/segmentation/{model}/{dataset}.zarr"),
    params:
        store="results/segmentation/{model}/{dataset}.zarr",
        part=part_of,
        parts=runtime(PARTS),
        upstream=upstream_of_segmentation,  # settings of the inputs (provenance.smk)
        scheduler=runtime(config["dask"]["scheduler"]),
        code=code_of("segment"),
        settings=json.dumps(config["segment"], sort_keys=True),
    threads: workflow.cores
    resources:
        mem_mb=memory_mb(2000, 4),
    log:
        f"logs/segment/{{model}}/{{dataset}}{PART}.log",
    benchmark:
        f"benchmarks/runs/segment/{{model}}/{{dataset}}{PART}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.segment {input:q} {params.store:q} --part {params.part} --parts {params.parts} --settings {params.settings:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
