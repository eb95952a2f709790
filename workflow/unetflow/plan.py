"""The run's plan: what a config asks of the workflow, as plain Python the rules read.

A :class:`Plan` turns the validated config (the schema's defaults filled in) into the roles
of the datasets and models, each model's settings and sample sizes, the options each rule
passes to its step, and the provenance of every output. The ``.smk`` files stay thin: they
name inputs, outputs and resources and ask the plan for the rest; ``unetflow.plan_checks``
refuses what the schema cannot express before any job runs.

Provenance comes from one table, :data:`unetflow.provenance.STAGES`: for each rule, the
settings of its own that change its results and the outputs (stage and keys) it reads. Each
rule carries the hash of its inputs' provenance as its ``upstream`` param: Snakemake reruns a
job whose params changed, but does not look past an output that exists, so a change whose run
was killed half-way (an intermediate output deleted) would otherwise leave the outputs below
it looking current.

Standard library only (and the package's light modules): Snakemake imports this while it
builds the DAG; torch is imported only where a model file has to be read.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

from . import folds, geometry, settings
from .errors import InputError
from .fingerprints import settings_fingerprint
from .methods import architectures
from .methods.registry import registered_keyword
from .provenance import STAGES, Node, code_of
from .stack_files import stack_files

DEFAULT_WORKING_BYTES = 140  # bytes a voxel of a segmentation method that does not say (segmenters.segmenter)
MODEL_SETTING_SECTIONS = ("train", "augment")  # a model's own overrides, not its architecture
MODEL_ROLE_KEYS = ("file", "start_from", "ensemble", "folds")  # what a model is, not its architecture
INGEST_KEYS = ("images", "labels", "slices", "label_kind", "voxel_size", "ignore_label", "labelled_slices",
               "channel_axis")


class Plan:
    """The plan of a run for ``config`` (validated, with the schema's defaults).

    ``made_by_a_rule(path)`` says whether a rule of the workflow makes ``path`` (the demo's
    stacks); such a stack's files are inputs even before they exist.
    """

    def __init__(self, config: dict, made_by_a_rule: Callable[[str], bool] = lambda path: False):
        self.config = config
        self.made_by_a_rule = made_by_a_rule

    # roles of models and datasets

    @functools.cache  # the DAG asks for datasets many times
    def datasets(self) -> dict[str, dict]:
        """The config's datasets and those its folds generate (:mod:`unetflow.folds`)."""
        generated = {name: entry for splits in self.fold_splits().values() for fold in splits
                     for name, entry in (*fold.train.items(), *fold.held_out.items())}
        return {**self.config["datasets"], **generated}

    def dataset(self, name: str) -> dict:
        return self.datasets()[name]

    def active_models(self) -> list[str]:
        """The models to train and apply: run_models, or all models."""
        names = self.config["run_models"] or list(self.config["models"])
        for name in names:
            if name not in self.config["models"]:
                raise InputError(f"config: run_models names '{name}', which is not in models; add it there or fix "
                                 "the name")
        return names

    def model_entry(self, model: str) -> dict:
        """A model's config entry; a fold model's is its ensemble's without ``folds``."""
        if model in self.config["models"]:
            return self.config["models"][model]
        ensemble = self.fold_of(model)
        return {key: value for key, value in self.config["models"][ensemble].items() if key != "folds"}

    def members(self, model: str) -> list[str]:
        """An ensemble's members (models.<name>.ensemble, or its fold models); [] for a single model."""
        if model in self.fold_splits():
            return [fold.model for fold in self.fold_splits()[model]]
        return list(self.model_entry(model).get("ensemble", []))

    def is_ensemble(self, model: str) -> bool:
        return bool(self.members(model))

    def used_models(self) -> list[str]:
        """The active models and the members of the active ensembles, each once."""
        used = []
        for model in self.active_models():
            used += [name for name in (*self.members(model), model) if name not in used]
        return used

    def predicted_models(self) -> list[str]:
        """The used models the predict rule runs (the ensembles' probabilities are their members' mean)."""
        return [model for model in self.used_models() if not self.is_ensemble(model)]

    def ensembles(self) -> list[str]:
        return [model for model in self.used_models() if self.is_ensemble(model)]

    def pretrained_file(self, model: str) -> str | None:
        """The model file of a pretrained model (models.<name>.file), else None."""
        return self.model_entry(model).get("file")

    def start_from(self, model: str) -> str | None:
        """The model file a trained model starts from (models.<name>.start_from: fine-tuning), else None."""
        return self.model_entry(model).get("start_from")

    def trained_models(self) -> list[str]:
        """The models this workflow trains: the used models without a model file, ensembles left out."""
        return [model for model in self.predicted_models() if not self.pretrained_file(model)]

    # cross-validation folds (unetflow.folds)

    @functools.cache
    def fold_splits(self) -> dict[str, list[folds.Fold]]:
        """The folds of each active model with ``folds: k``: k models over contiguous slabs of
        the train_on and validate_on slices."""
        with_folds = [model for model in self.active_models() if self.config["models"][model].get("folds")]
        if not with_folds:
            return {}
        pool = folds.pooled_stacks([*self.training_datasets(), *self.validation_datasets()],
                                   self.config["datasets"], self._slice_count)
        slices = sum(len(indices) for _, _, indices in pool)
        for model in with_folds:
            if self.config["models"][model]["folds"] > slices:
                raise InputError(f"config: models.{model}.folds is {self.config['models'][model]['folds']}, but "
                                 f"train_on and validate_on hold {slices} labelled slices; give at most {slices} "
                                 "folds (each holds out at least one slice)")
        return {model: folds.split(model, self.config["models"][model]["folds"], pool) for model in with_folds}

    def _slice_count(self, name: str) -> int:
        """The number of slices of a dataset that selects none, read from its stack."""
        path = self.config["datasets"][name]["images"]
        if not Path(path).exists():
            raise InputError(f"config: folds split the slices of datasets.{name}, whose images {path} do not exist "
                             f"yet; give its slices (datasets.{name}.slices, e.g. \"0-19\")")
        from .readers import open_stack  # tifffile, only when folds pool a whole stack

        return open_stack(path, channel_axis=self.config["datasets"][name]["channel_axis"]).shape[0]

    def fold_of(self, model: str) -> str:
        """The model whose fold ``model`` is."""
        for ensemble, splits in self.fold_splits().items():
            if any(fold.model == model for fold in splits):
                return ensemble
        raise InputError(f"config: no model '{model}' in models")

    def fold(self, model: str) -> folds.Fold | None:
        """The fold a fold model trains on and holds out, else None."""
        return next((fold for splits in self.fold_splits().values() for fold in splits if fold.model == model), None)

    def cross_validation(self) -> dict[str, list[tuple[str, str]]]:
        """Per active model with folds: (fold model, held-out dataset) of each fold, in order."""
        return {model: [(fold.model, name) for fold in splits for name in fold.held_out]
                for model, splits in self.fold_splits().items()}

    def tuning_pairs(self, model: str) -> list[tuple[str, str]]:
        """(model, dataset) of the predictions that tune ``model``'s segmentation: each fold's
        held-out slices by the fold's model, for a model with folds; else validate_on by itself."""
        if model in self.fold_splits():
            return self.cross_validation()[model]
        return [(model, name) for name in self.validation_datasets()]

    def tuning_model(self, model: str) -> str:
        """The model whose tuned settings segment ``model``'s predictions (a fold's: its ensemble's)."""
        return self.fold_of(model) if self.fold(model) else model

    def training_datasets(self, model: str | None = None) -> list[str]:
        """Datasets a model trains on (a fold's, or train_on), each checked to exist and have labels."""
        if model is not None and self.fold(model):
            return list(self.fold(model).train)
        names = self.config.get("train_on", [])
        for name in names:
            if name not in self.config["datasets"]:
                raise InputError(f"config: train_on names '{name}', which is not in datasets; add it there or fix "
                                 "the name")
            if "labels" not in self.config["datasets"][name]:
                raise InputError(f"config: train_on names '{name}', which has no labels; add labels to it")
        return names

    def validation_datasets(self, model: str | None = None) -> list[str]:
        """Datasets that validate a model's training (a fold's held-out slab, or validate_on),
        each checked to exist and have labels."""
        if model is not None and self.fold(model):
            return list(self.fold(model).held_out)
        for name in self.config["validate_on"]:
            if name not in self.config["datasets"] or "labels" not in self.config["datasets"][name]:
                raise InputError(f"config: validate_on names '{name}', which is not a labelled dataset in datasets")
        return self.config["validate_on"]

    def prediction_datasets(self) -> list[str]:
        """Datasets named in predict_on, each checked to exist."""
        for name in self.config["predict_on"]:
            if name not in self.config["datasets"]:
                raise InputError(f"config: predict_on names '{name}', which is not in datasets; add it there or "
                                 "fix the name")
        return self.config["predict_on"]

    def evaluated_datasets(self) -> list[str]:
        """Predicted datasets that have labels."""
        return [name for name in self.prediction_datasets() if "labels" in self.dataset(name)]

    def tuned(self) -> bool:
        return self.config["segment"]["settings"] == "tuned"

    def data_split(self) -> list[dict]:
        """Each dataset's stack, slices and use, for the report (which slices each number comes from)."""
        uses, scored = {}, self.evaluated_datasets()
        single = [model for model in self.used_models() if model not in self.fold_splits() and not self.fold(model)]
        pooled = [*self.training_datasets(), *self.validation_datasets()] if self.fold_splits() else []
        for use, names in (("train", self.training_datasets() if set(single) & set(self.trained_models()) else []),
                           ("validate + tune" if self.tuned() else "validate", self.validation_datasets()
                            if single else []),
                           ("pooled by the folds", pooled),
                           ("report", scored),
                           ("predict", [name for name in self.prediction_datasets() if name not in scored])):
            for name in names:
                uses.setdefault(name, []).append(use)
        for model, splits in self.fold_splits().items():
            for fold in splits:
                uses |= {name: [f"train fold {fold.number} of {model}"] for name in fold.train}
                uses |= {name: [f"hold out in fold {fold.number} of {model}: validate, tune, cross-validate"]
                         for name in fold.held_out}
        return [{"dataset": name, "use": ", ".join(use), "images": self.dataset(name)["images"],
                 "slices": str(self.dataset(name)["slices"]) or "all"} for name, use in uses.items()]

    def model_origins(self) -> dict[str, str]:
        """Where each model comes from, for the report: trained here, fine-tuned from a file, or a file applied."""
        origins = {}
        for model in self.used_models():
            if model in self.fold_splits():
                origins[model] = (f"ensemble of its {len(self.members(model))} fold models (mean probabilities), "
                                  "each trained on all labelled slices but one slab; tuned on the held-out slabs")
            elif self.is_ensemble(model):
                origins[model] = f"ensemble of {', '.join(self.members(model))} (mean probabilities)"
            elif self.fold(model):
                fold = self.fold(model)
                origins[model] = (f"fold {fold.number} of {self.fold_of(model)}: trained here on "
                                  f"{', '.join(fold.train)}, validated on {', '.join(fold.held_out)}")
            elif self.pretrained_file(model):
                origins[model] = f"applied from {self.pretrained_file(model)}"
            elif self.start_from(model):
                start = start_model_of(self.start_from(model))
                origins[model] = f"trained here, starting from {start.path} (sha256 {start.sha256[:12]})"
            else:
                origins[model] = "trained here from scratch"
        return origins

    def given_files(self) -> list[tuple[str, str]]:
        """(setting, path) of every file this run reads that the config gives: the stacks of the
        datasets it uses and the model files of its models."""
        used = {*(self.training_datasets() if self.trained_models() else []), *self.validation_datasets(),
                *self.prediction_datasets()}
        given = [(f"datasets.{name}.{key}", self.dataset(name)[key])
                 for name in sorted(used) for key in ("images", "labels") if key in self.dataset(name)]
        return given + [(f"models.{model}.file", self.pretrained_file(model))
                        for model in self.used_models() if self.pretrained_file(model)]

    # settings

    def model_train_settings(self, model: str) -> dict:
        """The global train section with the model's own overrides, checked against the schema."""
        overrides = self.model_entry(model).get("train", {})
        try:
            return settings.section("train", {**self.config["train"], **overrides})
        except InputError as error:
            raise InputError(str(error).replace("config: train", f"config: models.{model}.train", 1)) from None

    def model_architecture(self, model: str) -> dict:
        """The architecture keys of a model's entry (none for a fine-tuned model: its file's)."""
        return {key: value for key, value in self.model_entry(model).items()
                if key not in (*MODEL_SETTING_SECTIONS, *MODEL_ROLE_KEYS)}

    def model_sample_sizes(self, model: str) -> tuple:
        """(input, output) tiles of the model's training samples: its own output_size
        (models.<name>.augment.output_size, else augment.output_size), made valid for it; edges
        of square tiles in 2-D, "ZxYxX" in 3-D (:func:`unetflow.geometry.format_size`)."""
        dims = self.config["dims"]
        if self.start_from(model):
            try:
                architecture = start_model_of(self.start_from(model)).architecture
            except InputError as error:
                raise InputError(f"config: models.{model}: {error}") from None
        else:  # its errors name the setting themselves
            architecture = architectures.from_config(self.model_architecture(model), dims=dims,
                                                     num_classes=self.config["num_classes"], where=f"models.{model}")
        entry = self.model_entry(model)
        at_least = entry.get("augment", {}).get("output_size", self.config["augment"]["output_size"])
        if dims == 2:
            return architecture.sample_sizes(at_least)
        return tuple(geometry.format_size(shape) for shape in architecture.sample_shapes(at_least))

    def sample_store(self, dataset: str, model: str) -> str:
        input_size, output_size = self.model_sample_sizes(model)
        return f"results/{dataset}/augmented/{input_size}-{output_size}.zarr"

    def augment_settings(self) -> dict:
        """What an augmented sample store depends on (its tile sizes are in its path)."""
        return {key: self.config["augment"][key] for key in ("samples", "seed", "transforms")}

    def segment_settings(self) -> dict:
        """What the segment rule's results depend on in the segment section: with tuned settings
        only that (the choice is an input), else the fixed settings."""
        return {"settings": "tuned"} if self.tuned() else self.config["segment"]

    def results_settings(self, section: str, values: dict | None = None) -> dict:
        """Section ``section`` of the config without its runtime keys (the schema's x-runtime)."""
        return settings.without_runtime(section, self.config[section] if values is None else values)

    def runtime_settings(self, section: str, values: dict | None = None) -> dict:
        return settings.only_runtime(section, self.config[section] if values is None else values)

    def ingest_settings(self, name: str) -> list:
        """What a dataset's store depends on: its entry, and the demo's settings where the demo made its stacks."""
        entry = self.dataset(name)
        made = [self.config["demo"] for key in ("images", "labels") if key in entry and self.made_by_a_rule(entry[key])]
        return [{key: entry.get(key) for key in INGEST_KEYS}, self.config["normalize"], self.config["num_classes"],
                self.config["dims"], self.config["ngff"], made[:1], code_of("demo_data") if made else None]

    # what rules pass to their steps

    def raw_inputs(self, name: str) -> dict[str, list[str]]:
        """The files of a dataset's stacks, so that editing one slice makes ingest stale."""
        entry = self.dataset(name)
        return {"images": self._stack_files(entry["images"]), "labels": self._stack_files(entry.get("labels"))}

    def _stack_files(self, path: str | None) -> list[str]:
        if path is None:
            return []
        if not Path(path).exists():
            if not self.made_by_a_rule(path):
                raise InputError(f"{path}: no such file or folder; check the path in the config's datasets section")
            return [path]
        return [str(file) for file in stack_files(Path(path))]

    def labels_option(self, name: str) -> list[str]:
        """--labels, with the options of sparse annotations (unetflow.annotations) where given."""
        entry = self.dataset(name)
        if "labels" not in entry:
            return []
        sparse = [] if entry["ignore_label"] is None else ["--ignore-label", str(entry["ignore_label"])]
        if entry["labelled_slices"] != "":
            sparse += ["--labelled-slices", str(entry["labelled_slices"])]
        return ["--labels", entry["labels"], *sparse]

    def image_options(self, name: str) -> list[str]:
        """--slices, --channel-axis where given, and --normalize."""
        entry = self.dataset(name)
        options = ["--slices", str(entry["slices"])] if entry["slices"] != "" else []
        if entry["channel_axis"] is not None:
            options += ["--channel-axis", str(entry["channel_axis"])]
        return [*options, "--normalize", json.dumps(self.config["normalize"], sort_keys=True)]

    def training_inputs(self, model: str) -> dict[str, list[str]]:
        """Samples (precomputed) or data + weight maps (online), the validation data, the start model."""
        online = self.config["augment"]["mode"] == "online"
        train = self.training_datasets(model)
        return {
            "samples": [] if online else [self.sample_store(name, model) for name in train],
            "data": [f"results/{name}/data.zarr" for name in train] if online else [],
            "weights": [f"results/{name}/weights.zarr" for name in train] if online else [],
            "validation": [f"results/{name}/data.zarr" for name in self.validation_datasets(model)],
            "start": [self.start_from(model)] if self.start_from(model) else [],
        }

    def online_option(self, model: str) -> list[str]:
        """--online with the augment settings and the model's --sample-sizes, in online mode."""
        if self.config["augment"]["mode"] != "online":
            return []
        input_size, output_size = self.model_sample_sizes(model)
        return ["--online", json.dumps(self.augment_settings(), sort_keys=True), "--sample-sizes", str(input_size),
                str(output_size)]

    def start_option(self, model: str) -> list[str]:
        """--start-from of a fine-tuned model (its file is an input of the train rule too)."""
        return ["--start-from", self.start_from(model)] if self.start_from(model) else []

    def model_file(self, model: str) -> str:
        """A model's model.pt: its own file if pretrained, else what the train rule writes."""
        if self.is_ensemble(model):
            raise InputError(f"config: models.{model} is an ensemble of {', '.join(self.members(model))}: it has no "
                             "model file of its own; export or apply one of its members")
        return self.pretrained_file(model) or f"results/models/{model}/model.pt"

    def member_predictions(self, model: str, dataset: str) -> list[str]:
        """The prediction stores an ensemble's probabilities of ``dataset`` average."""
        return [f"results/predictions/{member}/{dataset}.zarr" for member in self.members(model)]

    def tuning_inputs(self, model: str) -> dict[str, list[str]]:
        """The labelled stores and the predictions of them that tune ``model`` (:meth:`tuning_pairs`)."""
        pairs = self.tuning_pairs(model)
        return {"data": [f"results/{dataset}/data.zarr" for _, dataset in pairs],
                "predictions": [f"results/predictions/{name}/{dataset}.zarr" for name, dataset in pairs]}

    def tiff_source(self, kind: str, model: str, dataset: str) -> str:
        """The store a TIFF export of ``kind`` (probabilities or segmentation) is written from."""
        folder = "predictions" if kind == "probabilities" else "segmentation"
        return f"results/{folder}/{model}/{dataset}.zarr"

    def segmentation_methods(self, stage: str) -> set[str]:
        """The methods a ``tune`` or ``segment`` job may run: those of the tune grid where the
        settings are tuned, else segment.method."""
        if stage == "tune" or self.tuned():
            return {method for entry in self.config["tune"]["grid"]
                    for method in entry.get("method", [self.config["segment"]["method"]])}
        return {self.config["segment"]["method"]}

    def block_worker_mb(self, stage: str) -> int:
        """Memory (MB) one worker of a ``tune`` or ``segment`` job holds: a block with its halo
        (blocks.edge in 3-D, blocks.plane_edge in 2-D, each side grown by blocks.halo) times the
        working bytes per voxel of the most demanding method it may run, plus 250 MB."""
        blocks = self.config["blocks"]
        side = blocks["edge"] if self.config["dims"] == 3 else blocks["plane_edge"]
        voxels = (side + 2 * blocks["halo"]) ** self.config["dims"]
        working = registered_keyword("segmenters", "segmenter", "bytes_per_voxel")
        per_voxel = max(working.get(method, DEFAULT_WORKING_BYTES) for method in self.segmentation_methods(stage))
        return int(voxels * per_voxel / 1e6) + 250

    def tuned_settings(self, model: str) -> list[str] | str:
        """The tune rule's choice for the model, when segment.settings is tuned."""
        return f"results/tuning/{self.tuning_model(model)}/segment.json" if self.tuned() else []

    # provenance

    def upstream_hash(self, stage: str, **keys: str) -> str:
        """The ``upstream`` param of a job of ``stage``: a hash of the provenance of what it reads."""
        return settings_fingerprint([self.provenance(node) for node in STAGES[stage].reads(self, **keys)])

    def made_with(self, stage: str, **keys: str) -> str:
        """A hash of the provenance of one output: the ``upstream`` param of the rules that only
        read it (view, tiff)."""
        return settings_fingerprint(self.provenance(Node.of(stage, **keys)))

    @functools.cache  # the DAG asks for the same nodes many times
    def provenance(self, node: Node) -> list:
        stage, keys = STAGES[node.stage], dict(node.keys)
        code = stage.code(self, **keys) if callable(stage.code) else stage.code
        return [node.stage, stage.own(self, **keys), None if code is None else code_of(code),
                [self.provenance(upstream) for upstream in stage.reads(self, **keys)]]


@functools.cache
def start_model_of(path: str):
    """The architecture and weights of a start_from file (:mod:`unetflow.start_model`), read once."""
    from . import start_model  # torch, only when a model is fine-tuned

    return start_model.read(path)
