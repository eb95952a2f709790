# The built-in synthetic demo data (only the demo config reads it).


rule demo_data:
    output:
        multiext("resources/demo/train-", "volume.tif", "labels.tif", "instances.tif"),
        multiext("resources/demo/test-", "volume.tif", "labels.tif", "instances.tif"),
    params:
        code=code_of("demo_data"),
        seed=config["demo"]["seed"],
        train_slices=config["demo"]["train_slices"],
        test_slices=config["demo"]["test_slices"],
        size=config["demo"]["size"],
    log:
        "logs/demo_data.log",
    benchmark:
        "benchmarks/runs/demo_data.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "python -m unetflow.steps.demo_data --out-dir resources/demo --seed {params.seed:q} --train-slices {params.train_slices:q} --test-slices {params.test_slices:q} --size {params.size:q} > {log:q} 2>&1"
