# The rules' shared helpers: the run's plan (unetflow.plan), read by every rule, and what only
# Snakemake can say (part flags, resources, wildcard constraints, which rule makes a file).

import json
import os
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from unetflow import config_checks, plan_checks
from unetflow.errors import InputError
from unetflow.plan import Plan
from unetflow.provenance import code_of

# The package runs from the source tree, installed or not (conda envs too), whatever
# characters the checkout's path holds; this checkout's copy comes first.
# (Snakemake formats the prefix like a shell command, hence the doubled braces; a checkout
# path with braces is refused first.)
config_checks.check_checkout(workflow.basedir)
PACKAGE_PATH = shlex.quote(str(Path(workflow.basedir) / "workflow"))
shell.prefix(f"export PYTHONPATH={PACKAGE_PATH}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")


def made_by_a_rule(path):
    return any(str(path) == str(output) for rule in workflow.rules for output in rule.output)


def refused(ask):
    """`ask`, with the plan's InputError as a ValueError: Snakemake shows the message of errors
    raised in the workflow's own files, not of those from the package."""
    try:
        return ask()
    except InputError as error:
        raise ValueError(str(error)) from None


plan = Plan(config, made_by_a_rule)
refused(lambda: plan_checks.check(plan))
DEMO_DIR = "resources/demo" if config["dims"] == 2 else "resources/demo3d"  # the demo_data rule's stacks or volumes
PARTS = config["predict"]["parts"]  # jobs per stack of predict and of segment (unetflow.parts)
PART = "" if PARTS == 1 else "-part{part}"  # in the log and benchmark names of a part


def part_flag(store):
    """The flag part {part} writes into the workspace of `store` (unetflow.parts.flag)."""
    folder, name = store.rsplit("/", 1)
    return f"{folder}/.{name}.parts/{{part}}-of-{PARTS}.done"


def part_flags(store):
    return expand(part_flag(store), part=range(1, PARTS + 1), allow_missing=True)


def store_or_part(store):
    """The output of a predict or segment job: the store, or part {part}'s flag when split."""
    return directory(store) if PARTS == 1 else temp(part_flag(store))


def part_of(wildcards):
    return int(getattr(wildcards, "part", 1))


def of_model(ask):
    """A Snakemake input/params function: the plan's answer for the job's model."""
    return lambda wildcards: refused(lambda: ask(wildcards.model))


def of_dataset(ask):
    return lambda wildcards: refused(lambda: ask(wildcards.dataset))


def upstream(stage):
    """The `upstream` param of the jobs of `stage`, the provenance of what they read (unetflow.plan)."""
    return lambda wildcards: plan.upstream_hash(stage, **{key: getattr(wildcards, key) for key in ("model", "dataset")
                                                           if hasattr(wildcards, key)})


def made_with(stage):
    """The `upstream` param of a rule that reads one output of `stage` (view, tiff)."""
    return lambda wildcards: plan.made_with(stage, model=wildcards.model, dataset=wildcards.dataset)


def as_json(value):
    return json.dumps(value, sort_keys=True)


def runtime(value):
    """A params entry for a setting that changes how a job runs, not its results (the schema's
    x-runtime keys): Snakemake's params trigger leaves out params computed from threads."""
    return lambda wildcards, threads: value


def input_megabytes(input):
    """Size of a job's inputs in MB, folders (Zarr stores) counted file by file."""
    total = 0
    for path in map(Path, input):
        if path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        elif path.exists():
            total += path.stat().st_size
    return total / 1e6


def memory_mb(base, per_input_mb):
    """mem_mb resource: base + per_input_mb x input size, doubled on each retry (SLURM)."""
    return lambda wildcards, input, attempt: int((base + per_input_mb * input_megabytes(input)) * attempt)


def block_memory_mb(base, per_worker):
    """mem_mb resource of a step that works block by block (README, "Large volumes"): base +
    per_worker x its threads, whatever the data's size; doubled on each retry."""
    return lambda wildcards, threads, attempt: int((base + per_worker * threads) * attempt)


def one_of(names):
    """A wildcard constraint matching exactly `names` (none: a pattern that never matches)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


# A wildcard matches only what this config makes: datasets it names (and its folds' slabs) and
# models it runs (and their ensembles' members); train matches only the models it trains
# (train.smk), predict only models with weights and ensemble only ensembles (predict.smk). A
# model file or stack the config gives, even one at a path like results/models/<name>/model.pt,
# is then never an output of this run, so no job can replace or delete it (check_given_files,
# after the rules are defined).
wildcard_constraints:
    dataset=one_of(plan.datasets()),
    model=one_of(plan.used_models()),
    part="[0-9]+",


def check_given_files():
    """A file the config gives is never the output of a rule of this run (but for the demo's
    stacks, which demo_data makes): Snakemake would rerun that rule whenever its settings
    differ from the run that wrote the file, deleting the file first."""
    for setting, path in plan.given_files():
        producers = [rule.name for rule in workflow.rules
                     if rule.name != "demo_data" and rule.is_producer(os.path.normpath(path))]
        if producers:
            fix = ("name that model in run_models to apply it, or copy the file out of results/ and give that path"
                   if setting.startswith("models.") else "give the stack it was made from, or copy it out of "
                   "results/ and give that path")
            raise ValueError(f"config: {setting}: {path} is an output of this workflow's {producers[0]} rule, which "
                             f"would replace or delete it whenever that rule reruns; {fix}")
