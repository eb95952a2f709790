# All evaluations, loss curves and segmentations -> results/report/ (also `snakemake --report`).


rule report:
    input:
        evaluations=expand("results/evaluation/{model}/{dataset}.csv", model=plan.active_models(), dataset=plan.evaluated_datasets()),
        metrics=expand("results/models/{model}/metrics.csv", model=plan.trained_models()),
        segmentations=expand("results/segmentation/{model}/{dataset}.zarr", model=plan.active_models(), dataset=plan.prediction_datasets()),
        tuning=expand("results/tuning/{model}/sweep.csv", model=plan.active_models()) if plan.tuned() else [],
        chosen=expand("results/tuning/{model}/segment.json", model=plan.active_models()) if plan.tuned() else [],
        images=expand("results/{dataset}/data.zarr", dataset=plan.prediction_datasets()),  # the overlays' images
        folds=[f"results/evaluation/{model}/{dataset}.csv" for pairs in plan.cross_validation().values() for model, dataset in pairs],
    output:
        table=report("results/report/metrics.html", caption="../report/metrics.rst", category="Metrics"),
        markdown="results/report/metrics.md",
        loss=report("results/report/loss_curves.png", caption="../report/loss_curves.rst", category="Training"),
        tuning=report("results/report/tuning.png", caption="../report/tuning.rst", category="Segmentation"),
        overlays=report("results/report/overlays.png", caption="../report/overlays.rst", category="Segmentation"),
    params:
        upstream=plan.upstream_hash("report"),  # settings of the inputs (unetflow.plan)
        code=code_of("report"),
        models=plan.active_models(),
        trained=plan.trained_models(),
        origins=as_json(plan.model_origins()),
        predicted=plan.prediction_datasets(),
        evaluated=plan.evaluated_datasets(),
        split=json.dumps(plan.data_split()),
        tuned="--tuned" if plan.tuned() else "",
        folds=as_json(plan.cross_validation()),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/runs/report.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.report --results results --out-dir results/report --models {params.models:q} --trained {params.trained:q} --origins {params.origins:q} --predicted {params.predicted:q} --evaluated {params.evaluated:q} --split {params.split:q} --folds {params.folds:q} {params.tuned} > {log:q} 2>&1"
