# The built-in synthetic demo data (only the demo config reads it).


rule demo_data:
    output:
        multiext(f"{DEMO_DIR}/train-", "volume.tif", "labels.tif", "instances.tif"),
        multiext(f"{DEMO_DIR}/test-", "volume.tif", "labels.tif", "instances.tif"),
    params:
        code=code_of("demo_data"),
        out_dir=lambda wildcards, output: Path(output[0]).parent,
        seed=config["demo"]["seed"],
        train_slices=config["demo"]["train_slices"],
        test_slices=config["demo"]["test_slices"],
        size=config["demo"]["size"],
        dims=config["dims"],
        depth=config["demo"]["depth"],
    log:
        "logs/demo_data.log",
    benchmark:
        "benchmarks/runs/demo_data.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.demo_data --out-dir {params.out_dir:q} --seed {params.seed:q} --train-slices {params.train_slices:q} --test-slices {params.test_slices:q} --size {params.size:q} --dims {params.dims:q} --depth {params.depth:q} > {log:q} 2>&1"
