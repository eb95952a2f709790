"""What the schema cannot say about a config, refused before any job runs, each with the
setting and the fix (:func:`check`); the single checks live in :mod:`unetflow.config_checks`."""

from __future__ import annotations

import itertools
from pathlib import Path

from . import config_checks, settings, voxel_size
from .errors import InputError
from .methods import architectures
from .methods.registry import check_name
from .plan import MODEL_SETTING_SECTIONS, Plan, start_model_of


def check(plan: Plan) -> None:
    """Every check of the plan's config; raises :class:`InputError` at the first problem."""
    config = plan.config
    for name, entry in config["datasets"].items():
        check_dataset(name, entry)
    for key in ("train_on", "validate_on", "predict_on", "run_models"):
        config_checks.check_unique(config.get(key, []), key)
    for model, entry in config["models"].items():
        if "ensemble" in entry:
            check_ensemble(plan, model)
        if "folds" in entry:
            check_folds(plan, model)
    if not config["train_on"] and not config["predict_on"]:
        raise InputError("config: train_on and predict_on are empty, so this config trains and predicts nothing; add "
                         "train_on: [<labelled dataset>] to train a model (with validate_on: [<another>] to tune "
                         "it), and predict_on: [<dataset>] to segment a dataset; or let `unetflow init <folder>` "
                         "write a config from a folder of images")
    if config["segment"]["method"] in config_checks.SEEDED_METHODS:
        config_checks.check_watershed(config["segment"])
    config_checks.check_class_weight_source(config["weights"]["class_weights"], config["dims"])
    check_name(config["segment"]["method"], "segmenters", "segmenter", "segment.method")
    if plan.tuned():
        check_tuning(plan)
    check_split(plan)
    for model in plan.trained_models():
        check_trained_model(plan, model)
    for model in plan.used_models():
        if plan.pretrained_file(model):
            check_pretrained(plan, model)
    if plan.trained_models() and not config["train_on"]:
        raise InputError("config: train_on is missing or empty, so the models have nothing to train on; name the "
                         "labelled datasets to train on, e.g. train_on: [my_labelled_stack], or give each model "
                         "a trained model file (models.<name>.file)")


def check_dataset(name: str, entry: dict) -> None:
    for key in ("images", "labels"):
        if key in entry:
            config_checks.check_path(entry[key], f"datasets.{name}.{key}")
    config_checks.parse_slice_selection(entry["slices"], f"config: datasets.{name}.slices")
    config_checks.parse_slice_selection(entry["labelled_slices"], f"config: datasets.{name}.labelled_slices")
    if "labels" not in entry and (entry["ignore_label"] is not None or entry["labelled_slices"] != ""):
        raise InputError(f"config: datasets.{name} gives ignore_label or labelled_slices but no labels; add its "
                         "labels, or remove those keys")
    voxel_size.from_config(entry["voxel_size"], f"config: datasets.{name}.voxel_size")


def check_trained_model(plan: Plan, model: str) -> None:
    if plan.start_from(model):
        check_start(plan, model)
    train = plan.model_train_settings(model)
    check_name(train["loss"], "losses", "loss", f"models.{model}.train.loss")
    if train["keep"] == "best" and not plan.validation_datasets(model):
        raise InputError(f"config: models.{model}.train.keep is best, but validate_on is empty, so no validation "
                         "loss can choose the iterate; name labelled datasets held out from training in "
                         "validate_on, or set keep: last")
    check_name(plan.model_entry(model).get("architecture", architectures.DEFAULT), "architectures",
               "architecture", f"models.{model}.architecture")
    plan.model_sample_sizes(model)  # unknown architecture arguments are refused here


def check_ensemble(plan: Plan, model: str) -> None:
    """An ensemble's entry names only other single models of ``models``, each once."""
    entry, setting = plan.config["models"][model], f"models.{model}.ensemble"
    others = sorted(set(entry) - {"ensemble"})
    if others:
        raise InputError(f"config: models.{model} is an ensemble and also gives {', '.join(others)}; its members "
                         "have their own architecture and training: remove those keys")
    config_checks.check_unique(entry["ensemble"], setting)
    for member in entry["ensemble"]:
        if member not in plan.config["models"]:
            raise InputError(f"config: {setting} names '{member}', which is not in models; add it there or fix the "
                             "name")
        if {"ensemble", "folds"} & set(plan.config["models"][member]):
            raise InputError(f"config: {setting} names '{member}', itself an ensemble; list the single models "
                             "instead")


def check_folds(plan: Plan, model: str) -> None:
    """A model with folds trains here, in 2-D, under names no other model or dataset has."""
    entry, setting = plan.config["models"][model], f"models.{model}.folds"
    if {"file", "ensemble"} & set(entry):
        raise InputError(f"config: models.{model} gives folds and also {'file' if 'file' in entry else 'ensemble'}; "
                         "folds train models here: remove one of them")
    if plan.config["dims"] != 2:
        raise InputError(f"config: {setting}: folds split slices of 2-D stacks (dims 2); for volumes, train models "
                         "on datasets you split yourself and name them in an ensemble (models.<name>.ensemble)")
    if not plan.config["train_on"]:
        raise InputError(f"config: {setting}: train_on is empty, so there are no labelled slices to split; name "
                         "them in train_on (and validate_on)")
    if model not in plan.active_models():
        return
    for fold in plan.fold_splits()[model]:
        for kind, name in (("models", fold.model), *(("datasets", name) for name in (*fold.train, *fold.held_out))):
            if name in plan.config[kind]:
                raise InputError(f"config: {kind}.{name} has the name {setting} gives a fold's "
                                 f"{'model' if kind == 'models' else 'slices'}; rename it")


def check_tuning(plan: Plan) -> None:
    """segment.settings tuned needs labelled data to tune on and a grid of known methods."""
    if any(not plan.tuning_pairs(model) for model in plan.active_models()):
        raise InputError("config: segment.settings is tuned, but validate_on is empty, so there is nothing to tune "
                         "the segmentation on; name labelled datasets held out from training in validate_on, or "
                         "set segment.settings: fixed and give the segment settings")
    config_checks.check_tune_metric(plan.config["tune"]["metric"], plan.config["dims"])
    for number, entry in enumerate(plan.config["tune"]["grid"]):
        for method in grid_values(entry, "method"):
            check_name(method, "segmenters", "segmenter", f"tune.grid[{number}].method")
        if set(config_checks.SEEDED_METHODS) & set(grid_values(entry, "method")):
            keys = ("seeds", "h", "threshold", "mask")
            for values in itertools.product(*(grid_values(entry, key) for key in keys)):
                config_checks.check_watershed(dict(zip(keys, values)), f"tune.grid[{number}]")


def grid_values(entry: dict, key: str) -> list:
    """A tune grid entry's values of ``key``, or the segment default it leaves the key at."""
    return entry.get(key, [settings.default("segment", key)])


def check_split(plan: Plan) -> None:
    """Data that trains, tunes and is reported on share no slice (:mod:`unetflow.config_checks`)."""
    roles = {"train_on": plan.training_datasets() if plan.trained_models() else [],
             "validate_on": plan.validation_datasets(), "predict_on": plan.evaluated_datasets()}
    config_checks.check_disjoint(roles, plan.config["datasets"])


def check_pretrained(plan: Plan, model: str) -> None:
    """A pretrained model's entry names only its file, and the file is a unetflow model of the config's dims."""
    entry, key = plan.config["models"][model], f"models.{model}.file"
    others = sorted(set(entry) - {"file"})
    if others:
        raise InputError(f"config: models.{model} gives a model file and also {', '.join(others)}; a pretrained "
                         "model's architecture and training are in its file: remove the other keys (or the file "
                         "to train the model here)")
    path = Path(entry["file"])
    if not path.is_file():
        raise InputError(f"config: {key}: {path} does not exist or is not a file; give the path of a model.pt "
                         "written by unetflow's train rule")
    from .inference import read_model_file  # torch, only when a pretrained model is configured

    try:
        _, architecture = read_model_file(path)
    except InputError as error:
        raise InputError(f"config: {key}: {error}") from None
    dims = plan.config["dims"]
    if architecture.dims != dims:
        raise InputError(f"config: {key}: {path} is a {architecture.dims}-D model, but dims is {dims}; set dims: "
                         f"{architecture.dims} to apply it, or give a {dims}-D model")


def check_start(plan: Plan, model: str) -> None:
    """A fine-tuned model's entry gives no architecture (the file's is used), and the file is a
    unetflow model or export of the config's dims and classes."""
    entry, setting = plan.config["models"][model], f"models.{model}.start_from"
    others = sorted(set(entry) - {"start_from", *MODEL_SETTING_SECTIONS})
    if others:
        raise InputError(f"config: models.{model} starts from a model file and also gives {', '.join(others)}; its "
                         "architecture is the file's: remove those keys (train and augment may stay)")
    from . import start_model

    try:
        start = start_model_of(entry["start_from"])
    except InputError as error:
        raise InputError(f"config: {setting}: {error}") from None
    try:
        start_model.check_fits(start, num_classes=plan.config["num_classes"], dims=plan.config["dims"],
                               setting=setting)
    except InputError as error:
        raise InputError(f"config: {error}") from None
