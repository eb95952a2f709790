# Helpers shared by the rules: dataset lookups and input lists.

import functools
import itertools
import json
import os
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from unetflow import config_checks, geometry, settings, voxel_size
from unetflow.stack_files import stack_files as files_of_stack
from unetflow.errors import InputError
from unetflow.fingerprints import code_fingerprint
from unetflow.methods import architectures
from unetflow.methods.registry import check_name

# The package runs from the source tree, installed or not (conda envs too), whatever
# characters the checkout's path holds; this checkout's copy comes first.
# (Snakemake formats the prefix like a shell command, hence the doubled braces; a checkout
# path with braces is refused first.)
config_checks.check_checkout(workflow.basedir)
PACKAGE_PATH = shlex.quote(str(Path(workflow.basedir) / "workflow"))
shell.prefix(f"export PYTHONPATH={PACKAGE_PATH}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")


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


def check_config():
    """What the schema cannot say, refused before any job runs (see unetflow.config_checks)."""
    for name, entry in config["datasets"].items():
        for key in ("images", "labels"):
            if key in entry:
                config_checks.check_path(entry[key], f"datasets.{name}.{key}")
        config_checks.parse_slice_selection(entry["slices"], f"config: datasets.{name}.slices")
        config_checks.parse_slice_selection(entry["labelled_slices"], f"config: datasets.{name}.labelled_slices")
        if "labels" not in entry and (entry["ignore_label"] is not None or entry["labelled_slices"] != ""):
            raise ValueError(f"config: datasets.{name} gives ignore_label or labelled_slices but no labels; add its "
                             "labels, or remove those keys")
        voxel_size.from_config(entry["voxel_size"], f"config: datasets.{name}.voxel_size")
    for key in ("train_on", "validate_on", "predict_on", "run_models"):
        config_checks.check_unique(config.get(key, []), key)
    if not config["train_on"] and not config["predict_on"]:
        raise ValueError("config: train_on and predict_on are empty, so this config trains and predicts nothing; add "
                         "train_on: [<labelled dataset>] to train a model (with validate_on: [<another>] to tune "
                         "it), and predict_on: [<dataset>] to segment a dataset; or let `unetflow init <folder>` "
                         "write a config from a folder of images")
    if config["segment"]["method"] in config_checks.SEEDED_METHODS:
        config_checks.check_watershed(config["segment"])
    config_checks.check_class_weight_source(config["weights"]["class_weights"], config["dims"])
    check_method(config["segment"]["method"], "segmenters", "segmenter", "segment.method")
    if tuned():
        check_tuning()
    check_split()
    for model in trained_models():
        if start_from(model):
            check_start(model)
        check_method(model_train_settings(model)["loss"], "losses", "loss", f"models.{model}.train.loss")
        if model_train_settings(model)["keep"] == "best" and not validation_datasets():
            raise ValueError(f"config: models.{model}.train.keep is best, but validate_on is empty, so no validation "
                             "loss can choose the iterate; name labelled datasets held out from training in "
                             "validate_on, or set keep: last")
        check_method(config["models"][model].get("architecture", architectures.DEFAULT), "architectures", "architecture",
                     f"models.{model}.architecture")
        model_sample_sizes(model)  # unknown architecture arguments are refused here
    for model in active_models():
        if pretrained_file(model):
            check_pretrained(model)
    if trained_models() and not config["train_on"]:
        raise ValueError("config: train_on is missing or empty, so the models have nothing to train on; name the "
                         "labelled datasets to train on, e.g. train_on: [my_labelled_stack], or give each model "
                         "a trained model file (models.<name>.file)")


def check_tuning():
    """segment.settings tuned needs labelled data to tune on and a grid of known methods."""
    if active_models() and not validation_datasets():
        raise ValueError("config: segment.settings is tuned, but validate_on is empty, so there is nothing to tune "
                         "the segmentation on; name labelled datasets held out from training in validate_on, or "
                         "set segment.settings: fixed and give the segment settings")
    for number, entry in enumerate(config["tune"]["grid"]):
        for method in grid_values(entry, "method"):
            check_method(method, "segmenters", "segmenter", f"tune.grid[{number}].method")
        if set(config_checks.SEEDED_METHODS) & set(grid_values(entry, "method")):
            keys = ("seeds", "h", "threshold", "mask")
            for values in itertools.product(*(grid_values(entry, key) for key in keys)):
                config_checks.check_watershed(dict(zip(keys, values)), f"tune.grid[{number}]")


def grid_values(entry, key):
    """A tune grid entry's values of `key`, or the segment default it leaves the key at."""
    return entry.get(key, [settings.default("segment", key)])


def check_split():
    """Data that trains, tunes and is reported on share no slice (unetflow.config_checks)."""
    roles = {"train_on": training_datasets() if trained_models() else [], "validate_on": validation_datasets(),
             "predict_on": evaluated_datasets()}
    try:
        config_checks.check_disjoint(roles, config["datasets"])
    except InputError as error:
        raise ValueError(str(error)) from None


def check_pretrained(model):
    """A pretrained model's entry names only its file, and the file is a unetflow model."""
    entry, key = config["models"][model], f"models.{model}.file"
    others = sorted(set(entry) - {"file"})
    if others:
        raise ValueError(f"config: models.{model} gives a model file and also {', '.join(others)}; a pretrained "
                         "model's architecture and training are in its file: remove the other keys (or the file "
                         "to train the model here)")
    path = Path(entry["file"])
    if not path.is_file():
        raise ValueError(f"config: {key}: {path} does not exist or is not a file; give the path of a model.pt "
                         "written by unetflow's train rule")
    from unetflow.inference import read_model_file  # torch, only when a pretrained model is configured

    try:
        _, architecture = read_model_file(path)
    except InputError as error:
        raise ValueError(f"config: {key}: {error}") from None
    if architecture.dims != config["dims"]:
        raise ValueError(f"config: {key}: {path} is a {architecture.dims}-D model, but dims is {config['dims']}; "
                         f"set dims: {architecture.dims} to apply it, or give a {config['dims']}-D model")


def start_from(model):
    """The model file a trained model starts from (models.<name>.start_from: fine-tuning), else None."""
    return config["models"][model].get("start_from")


@functools.cache
def start_model_of(path):
    """The architecture and weights of a start_from file (unetflow.start_model), read once."""
    from unetflow import start_model  # torch, only when a model is fine-tuned

    return start_model.read(path)


def check_start(model):
    """A fine-tuned model's entry gives no architecture (the file's is used), and the file is a
    unetflow model or export of the config's dims and classes."""
    entry, setting = config["models"][model], f"models.{model}.start_from"
    others = sorted(set(entry) - {"start_from", *MODEL_SETTING_SECTIONS})
    if others:
        raise ValueError(f"config: models.{model} starts from a model file and also gives {', '.join(others)}; its "
                         "architecture is the file's: remove those keys (train and augment may stay)")
    from unetflow import start_model

    try:
        start = start_model_of(entry["start_from"])
    except InputError as error:
        raise ValueError(f"config: {setting}: {error}") from None
    try:
        start_model.check_fits(start, num_classes=config["num_classes"], dims=config["dims"], setting=setting)
    except InputError as error:
        raise ValueError(f"config: {error}") from None


def check_method(name, module, decorator, setting):
    """A method name the registry in unetflow/methods/<module>.py defines, or a ValueError
    (Snakemake shows the message of errors raised here, not of those from the package)."""
    try:
        check_name(name, module, decorator, setting)
    except InputError as error:
        raise ValueError(str(error)) from None


@functools.cache  # the sources do not change while the DAG is built; provenance asks often
def code_of(step):
    """Hash of the code that runs for `step` (unetflow.fingerprints.code_fingerprint), a params
    entry: editing the step or a module it imports reruns its jobs."""
    return code_fingerprint(step)


def runtime(value):
    """A params entry for a setting that changes how a job runs, not its results (the schema's
    x-runtime keys): Snakemake's params trigger leaves out params computed from threads."""
    return lambda wildcards, threads: value


def results_settings(section, values=None):
    """Section `section` of the config without its runtime keys (the schema's x-runtime)."""
    return settings.without_runtime(section, config[section] if values is None else values)


def predict_runtime(wildcards, threads):
    """predict's runtime keys (device, batch_size) as JSON; computed from threads, so no rerun trigger."""
    return json.dumps(settings.only_runtime("predict", config["predict"]), sort_keys=True)


def train_runtime(wildcards, threads):
    """The model's train runtime keys (device, workers, intervals) as JSON; no rerun trigger."""
    return json.dumps(settings.only_runtime("train", model_train_settings(wildcards.model)), sort_keys=True)


def tuned():
    return config["segment"]["settings"] == "tuned"


def segment_settings():
    """What the segment rule's results depend on in the segment section: with tuned settings
    only that (the choice is an input), else the fixed settings."""
    return {"settings": "tuned"} if tuned() else config["segment"]


def tuned_settings(wildcards):
    """The tune rule's choice for the model, when segment.settings is tuned."""
    return f"results/tuning/{wildcards.model}/segment.json" if tuned() else []


def augment_settings():
    """What an augmented sample store depends on (its tile sizes are in its path)."""
    return {key: config["augment"][key] for key in ("samples", "seed", "transforms")}


def dataset(name):
    return config["datasets"][name]


def pretrained_file(model):
    """The model file of a pretrained model (models.<name>.file), else None."""
    return config["models"][model].get("file")


def trained_models():
    """The active models this workflow trains (those without a model file)."""
    return [model for model in active_models() if not pretrained_file(model)]


def model_file(wildcards):
    """A model's model.pt: its own file if pretrained, else what the train rule writes."""
    return pretrained_file(wildcards.model) or f"results/models/{wildcards.model}/model.pt"


def active_models():
    """The models to train and apply: run_models, or all models."""
    names = config["run_models"] or list(config["models"])
    for name in names:
        if name not in config["models"]:
            raise ValueError(f"config: run_models names '{name}', which is not in models; add it there or fix the name")
    return names


def model_train_settings(model):
    """The global train section with the model's own overrides, checked against the schema."""
    overrides = config["models"][model].get("train", {})
    try:
        return settings.section("train", {**config["train"], **overrides})
    except InputError as error:
        raise ValueError(str(error).replace("config: train", f"config: models.{model}.train", 1)) from None


MODEL_SETTING_SECTIONS = ("train", "augment")  # a model's own overrides, not architecture


def model_architecture(model):
    """The architecture keys of a model's entry (none for a fine-tuned model: its file's)."""
    return {key: value for key, value in config["models"][model].items()
            if key not in (*MODEL_SETTING_SECTIONS, "start_from")}


def start_option(wildcards):
    """--start-from of a fine-tuned model (its file is an input of the train rule too)."""
    return ["--start-from", start_from(wildcards.model)] if start_from(wildcards.model) else []


def model_origins():
    """Where each model comes from, for the report: trained here, fine-tuned from a file, or a file applied."""
    origins = {}
    for model in active_models():
        if pretrained_file(model):
            origins[model] = f"applied from {pretrained_file(model)}"
        elif start_from(model):
            start = start_model_of(start_from(model))
            origins[model] = f"trained here, starting from {start.path} (sha256 {start.sha256[:12]})"
        else:
            origins[model] = "trained here from scratch"
    return json.dumps(origins, sort_keys=True)


def model_sample_sizes(model):
    """(input, output) tiles of the model's training samples: its own output_size
    (models.<name>.augment.output_size, else augment.output_size), made valid for it; edges
    of square tiles in 2-D, "ZxYxX" in 3-D (unetflow.geometry.format_size)."""
    try:
        architecture = start_model_of(start_from(model)).architecture if start_from(model) else \
            architectures.from_config(config["models"][model], num_classes=config["num_classes"],
                                      dims=config["dims"], where=f"models.{model}")
    except InputError as error:
        raise ValueError(f"config: models.{model}: {error}") from None
    at_least = config["models"][model].get("augment", {}).get("output_size", config["augment"]["output_size"])
    if config["dims"] == 2:
        return architecture.sample_sizes(at_least)
    return tuple(geometry.format_size(shape) for shape in architecture.sample_shapes(at_least))


def sample_store(dataset, model):
    input_size, output_size = model_sample_sizes(model)
    return f"results/{dataset}/augmented/{input_size}-{output_size}.zarr"


def training_datasets():
    """Datasets named in train_on, each checked to exist and have labels."""
    names = config.get("train_on", [])
    for name in names:
        if name not in config["datasets"]:
            raise ValueError(f"config: train_on names '{name}', which is not in datasets; add it there or fix the name")
        if "labels" not in config["datasets"][name]:
            raise ValueError(f"config: train_on names '{name}', which has no labels; add labels to it")
    return names


def validation_datasets():
    """Datasets named in validate_on, each checked to exist and have labels."""
    for name in config["validate_on"]:
        if name not in config["datasets"] or "labels" not in config["datasets"][name]:
            raise ValueError(f"config: validate_on names '{name}', which is not a labelled dataset in datasets")
    return config["validate_on"]


def prediction_datasets():
    """Datasets named in predict_on, each checked to exist."""
    for name in config["predict_on"]:
        if name not in config["datasets"]:
            raise ValueError(f"config: predict_on names '{name}', which is not in datasets; add it there or fix the name")
    return config["predict_on"]


def evaluated_datasets():
    """Predicted datasets that have labels."""
    return [name for name in prediction_datasets() if "labels" in config["datasets"][name]]


def data_split():
    """Each dataset's stack, slices and use, for the report (which slices each number comes from)."""
    uses, scored = {}, evaluated_datasets()
    for use, names in (("train", training_datasets() if trained_models() else []),
                       ("validate + tune" if tuned() else "validate", validation_datasets()),
                       ("report", scored),
                       ("predict", [name for name in prediction_datasets() if name not in scored])):
        for name in names:
            uses.setdefault(name, []).append(use)
    return [{"dataset": name, "use": ", ".join(use), "images": dataset(name)["images"],
             "slices": str(dataset(name)["slices"]) or "all"} for name, use in uses.items()]


def training_inputs(wildcards):
    """Samples (precomputed) or data + weight maps (online), and the validation data."""
    online = config["augment"]["mode"] == "online"
    train = training_datasets()
    return {
        "samples": [] if online else [sample_store(name, wildcards.model) for name in train],
        "data": expand("results/{dataset}/data.zarr", dataset=train) if online else [],
        "weights": expand("results/{dataset}/weights.zarr", dataset=train) if online else [],
        "validation": expand("results/{dataset}/data.zarr", dataset=validation_datasets()),
        "start": [start_from(wildcards.model)] if start_from(wildcards.model) else [],
    }


def online_option(wildcards):
    """--online with the augment settings and the model's --sample-sizes, in online mode."""
    if config["augment"]["mode"] != "online":
        return []
    input_size, output_size = model_sample_sizes(wildcards.model)
    return ["--online", json.dumps(augment_settings(), sort_keys=True), "--sample-sizes", str(input_size), str(output_size)]


def made_by_a_rule(path):
    return any(str(path) == str(output) for rule in workflow.rules for output in rule.output)


def stack_files(path):
    """The files of a raw stack, so that editing one slice makes ingest stale."""
    if path is None:
        return []
    stack = Path(path)
    if not stack.exists() and not made_by_a_rule(path):
        raise ValueError(f"{path}: no such file or folder; check the path in the config's datasets section")
    return [str(file) for file in files_of_stack(stack)] if stack.exists() else [path]


def tiff_source(wildcards):
    """The store a TIFF export of {kind} (probabilities or segmentation) is written from."""
    folder = "predictions" if wildcards.kind == "probabilities" else "segmentation"
    return f"results/{folder}/{wildcards.model}/{wildcards.dataset}.zarr"


def raw_inputs(wildcards):
    entry = dataset(wildcards.dataset)
    return {"images": stack_files(entry["images"]), "labels": stack_files(entry.get("labels"))}


def labels_option(wildcards):
    """--labels, with the options of sparse annotations (unetflow.annotations) where given."""
    entry = dataset(wildcards.dataset)
    if "labels" not in entry:
        return []
    sparse = [] if entry["ignore_label"] is None else ["--ignore-label", str(entry["ignore_label"])]
    if entry["labelled_slices"] != "":
        sparse += ["--labelled-slices", str(entry["labelled_slices"])]
    return ["--labels", entry["labels"], *sparse]


def image_options(wildcards):
    """--slices, --channel-axis where given, and --normalize."""
    entry = dataset(wildcards.dataset)
    options = ["--slices", str(entry["slices"])] if entry["slices"] != "" else []
    if entry["channel_axis"] is not None:
        options += ["--channel-axis", str(entry["channel_axis"])]
    return [*options, "--normalize", json.dumps(config["normalize"], sort_keys=True)]


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


def blocks_settings():
    """The blocks section as JSON, for the steps that segment (a result setting there)."""
    return json.dumps(config["blocks"], sort_keys=True)


def one_of(names):
    """A wildcard constraint matching exactly `names` (none: a pattern that never matches)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


check_config()


# A wildcard matches only what this config makes: datasets it names and models it runs, and
# train matches only the models it trains (train.smk). A model file or stack the config gives,
# even one at a path like results/models/<name>/model.pt, is then never an output of this run,
# so no job can replace or delete it (check_given_files, after the rules are defined).
wildcard_constraints:
    dataset=one_of(config["datasets"]),
    model=one_of(active_models()),
    part="[0-9]+",


def given_files():
    """(setting, path) of every file this run reads that the config gives: the stacks of the
    datasets and the model files of the models it uses."""
    used = set(training_datasets() if trained_models() else []) | set(validation_datasets()) | set(prediction_datasets())
    for name in sorted(used):
        for key in ("images", "labels"):
            if key in dataset(name):
                yield f"datasets.{name}.{key}", dataset(name)[key]
    for model in active_models():
        if pretrained_file(model):
            yield f"models.{model}.file", pretrained_file(model)


def check_given_files():
    """A file the config gives is never the output of a rule of this run (but for the demo's
    stacks, which demo_data makes): Snakemake would rerun that rule whenever its settings
    differ from the run that wrote the file, deleting the file first."""
    for setting, path in given_files():
        producers = [rule.name for rule in workflow.rules
                     if rule.name != "demo_data" and rule.is_producer(os.path.normpath(path))]
        if producers:
            fix = ("name that model in run_models to apply it, or copy the file out of results/ and give that path"
                   if setting.startswith("models.") else "give the stack it was made from, or copy it out of "
                   "results/ and give that path")
            raise ValueError(f"config: {setting}: {path} is an output of this workflow's {producers[0]} rule, which "
                             f"would replace or delete it whenever that rule reruns; {fix}")
