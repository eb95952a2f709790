# A trained model -> a bioimage.io model package (spec 0.5). Not part of `all`: ask for it by
# target, e.g. `snakemake --cores 2 results/models/small/bioimageio.zip`.


rule export:
    input:
        of_model(plan.model_file),  # the train rule's model.pt, or a pretrained model's file
    output:
        "results/models/{model}/bioimageio.zip",
    params:
        code=code_of("export"),
    log:
        "logs/export/{model}.log",
    benchmark:
        "benchmarks/runs/export/{model}.tsv"
    conda:
        "../../envs/bioimageio.yaml"
    shell:
        "python -m unetflow.steps.export {input:q} {output:q} > {log:q} 2>&1"
