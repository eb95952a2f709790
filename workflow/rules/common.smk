# Helpers shared by the rules: dataset lookups and input lists.

from pathlib import Path

# The package runs from the source tree, installed or not (conda envs too).
shell.prefix(f"export PYTHONPATH={Path(workflow.basedir) / 'workflow'}:$PYTHONPATH; ")


wildcard_constraints:
    dataset="|".join(config["datasets"]) or "no-datasets",


def dataset(name):
    return config["datasets"][name]


def stack_files(path):
    """The files of a raw stack, so that editing one slice makes ingest stale."""
    if path is None:
        return []
    stack = Path(path)
    if stack.is_dir():
        return sorted(str(f) for f in stack.rglob("*") if f.is_file())
    return [path]


def raw_inputs(wildcards):
    entry = dataset(wildcards.dataset)
    return {"images": stack_files(entry["images"]), "labels": stack_files(entry.get("labels"))}


def labels_option(wildcards):
    labels = dataset(wildcards.dataset).get("labels")
    return f"--labels '{labels}'" if labels else ""
