# Augmented samples (or data + weights, online) -> a trained U-Net per model.


rule train:
    input:
        unpack(of_model(plan.training_inputs)),
    output:
        model="results/models/{model}/model.pt",
        metrics="results/models/{model}/metrics.csv",
        loss="results/models/{model}/loss.png",
    wildcard_constraints:
        model=one_of(plan.trained_models()),  # never a model whose file the config gives (common.smk)
    params:
        upstream=upstream("train"),  # settings of the inputs (unetflow.plan)
        runtime=lambda wildcards, threads: as_json(plan.runtime_settings("train", plan.model_train_settings(wildcards.model))),
        code=code_of("train"),
        model=lambda wildcards: as_json(plan.model_architecture(wildcards.model)),
        settings=lambda wildcards: as_json(plan.results_settings("train", plan.model_train_settings(wildcards.model))),
        online=of_model(plan.online_option),
        start=of_model(plan.start_option),
        num_classes=config["num_classes"],
        dims=config["dims"],
        out_dir=lambda wildcards: f"results/models/{wildcards.model}",
    threads: workflow.cores
    resources:
        gpu=1,
        mem_mb=memory_mb(8000, 1),
    log:
        "logs/train/{model}.log",
    benchmark:
        "benchmarks/runs/train/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m unetflow.steps.train --samples {input.samples:q} --data {input.data:q} --weights {input.weights:q} --validation {input.validation:q} --out-dir {params.out_dir:q} --model {params.model:q} --settings {params.settings:q} --runtime {params.runtime:q} {params.online:q} {params.start:q} --num-classes {params.num_classes:q} --dims {params.dims:q} --threads {threads} > {log:q} 2>&1"
