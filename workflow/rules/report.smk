# All evaluations, loss curves and segmentations -> results/report/ (also `snakemake --report`).


rule report:
    input:
        evaluations=expand("results/evaluation/{model}/{dataset}.csv", model=active_models(), dataset=evaluated_datasets()),
        metrics=expand("results/models/{model}/metrics.csv", model=trained_models()),
        segmentations=expand("results/segmentation/{model}/{dataset}.zarr", model=active_models(), dataset=prediction_datasets()),
        tuning=expand("results/tuning/{model}/sweep.csv", model=active_models()) if tuned() else [],
        chosen=expand("results/tuning/{model}/segment.json", model=active_models()) if tuned() else [],
        images=expand("results/{dataset}/data.zarr", dataset=prediction_datasets()),  # the overlays' images
    output:
        table=report("results/report/metrics.html", caption="../report/metrics.rst", category="Metrics"),
        markdown="results/report/metrics.md",
        loss=report("results/report/loss_curves.png", caption="../report/loss_curves.rst", category="Training"),
        tuning=report("results/report/tuning.png", caption="../report/tuning.rst", category="Segmentation"),
        overlays=report("results/report/overlays.png", caption="../report/overlays.rst", category="Segmentation"),
    params:
        upstream=upstream_of_report(),  # settings of the inputs (provenance.smk)
        code=code_of("report"),
        models=active_models(),
        trained=trained_models(),
        origins=model_origins(),
        predicted=prediction_datasets(),
        evaluated=evaluated_datasets(),
        split=json.dumps(data_split()),
        tuned="--tuned" if tuned() else "",
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/runs/report.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.report --results results --out-dir results/report --models {params.models:q} --trained {params.trained:q} --origins {params.origins:q} --predicted {params.predicted:q} --evaluated {params.evaluated:q} --split {params.split:q} {params.tuned} > {log:q} 2>&1"
