# Labels -> the U-Net weight map of every labelled slice (Dask).


rule weights:
    input:
        "results/{dataset}/data.zarr",
    output:
        store=directory("results/{dataset}/weights.zarr"),
        preview="results/{dataset}/weights_preview.png",
    params:
        upstream=upstream_of_data,  # settings of the inputs (provenance.smk)
        w0=config["weights"]["w0"],
        sigma=config["weights"]["sigma"],
        class_weights=config["weights"]["class_weights"],
        num_classes=config["num_classes"],
        scheduler=config["dask"]["scheduler"],
    threads: workflow.cores
    resources:
        mem_mb=memory_mb(2000, 4),
    log:
        "logs/weights/{dataset}.log",
    benchmark:
        "benchmarks/runs/weights/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.weights {input:q} {output.store:q} --preview {output.preview:q} --w0 {params.w0:q} --sigma {params.sigma:q} --class-weights {params.class_weights:q} --num-classes {params.num_classes:q} --scheduler {params.scheduler:q} --workers {threads} > {log:q} 2>&1"
