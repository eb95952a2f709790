"""The run's plan: what a config asks of the workflow, as plain Python the rules read.

A :class:`Plan` turns the validated config (the schema's defaults filled in) into the roles
of the datasets and models, each model's settings and sample sizes, the options each rule
passes to its step, and the provenance of every output. The ``.smk`` files stay thin: they
name inputs, outputs and resources and ask the plan for the rest; ``unetflow.plan_checks``
refuses what the schema cannot express before any job runs.

Provenance comes from one table, :data:`STAGES`: for each rule, the settings of its own that
change its results and the outputs (stage and keys) it reads. A node's provenance is its
own settings, the hash of its code (:func:`unetflow.fingerprints.code_fingerprint`) and the
provenance of everything upstream. Each rule carries the hash of its inputs' provenance as
its ``upstream`` param: Snakemake reruns a job whose params changed, but does not look past
an output that exists, so a change whose run was killed half-way (an intermediate output
deleted) would otherwise leave the outputs below it looking current.

Standard library only (and the package's light modules): Snakemake imports this while it
builds the DAG; torch is imported only where a model file has to be read.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import geometry, settings
from .errors import InputError
from .fingerprints import code_fingerprint, settings_fingerprint, store_fingerprint
from .methods import architectures
from .methods.registry import registered_keyword
from .stack_files import stack_files

DEFAULT_WORKING_BYTES = 140  # bytes a voxel of a segmentation method that does not say (segmenters.segmenter)
MODEL_SETTING_SECTIONS = ("train", "augment")  # a model's own overrides, not its architecture
INGEST_KEYS = ("images", "labels", "slices", "label_kind", "voxel_size", "ignore_label", "labelled_slices",
               "channel_axis")


@dataclass(frozen=True)
class Node:
    """One output of the run: a stage (a rule) and the wildcard values that name it."""

    stage: str
    keys: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, stage: str, **keys: str) -> Node:
        return cls(stage, tuple(sorted(keys.items())))


class Plan:
    """The plan of a run for ``config`` (validated, with the schema's defaults).

    ``made_by_a_rule(path)`` says whether a rule of the workflow makes ``path`` (the demo's
    stacks); such a stack's files are inputs even before they exist.
    """

    def __init__(self, config: dict, made_by_a_rule: Callable[[str], bool] = lambda path: False):
        self.config = config
        self.made_by_a_rule = made_by_a_rule

    # roles of models and datasets

    def dataset(self, name: str) -> dict:
        return self.config["datasets"][name]

    def active_models(self) -> list[str]:
        """The models to train and apply: run_models, or all models."""
        names = self.config["run_models"] or list(self.config["models"])
        for name in names:
            if name not in self.config["models"]:
                raise InputError(f"config: run_models names '{name}', which is not in models; add it there or fix "
                                 "the name")
        return names

    def pretrained_file(self, model: str) -> str | None:
        """The model file of a pretrained model (models.<name>.file), else None."""
        return self.config["models"][model].get("file")

    def start_from(self, model: str) -> str | None:
        """The model file a trained model starts from (models.<name>.start_from: fine-tuning), else None."""
        return self.config["models"][model].get("start_from")

    def trained_models(self) -> list[str]:
        """The active models this workflow trains (those without a model file)."""
        return [model for model in self.active_models() if not self.pretrained_file(model)]

    def training_datasets(self) -> list[str]:
        """Datasets named in train_on, each checked to exist and have labels."""
        names = self.config.get("train_on", [])
        for name in names:
            if name not in self.config["datasets"]:
                raise InputError(f"config: train_on names '{name}', which is not in datasets; add it there or fix "
                                 "the name")
            if "labels" not in self.dataset(name):
                raise InputError(f"config: train_on names '{name}', which has no labels; add labels to it")
        return names

    def validation_datasets(self) -> list[str]:
        """Datasets named in validate_on, each checked to exist and have labels."""
        for name in self.config["validate_on"]:
            if name not in self.config["datasets"] or "labels" not in self.dataset(name):
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
        for use, names in (("train", self.training_datasets() if self.trained_models() else []),
                           ("validate + tune" if self.tuned() else "validate", self.validation_datasets()),
                           ("report", scored),
                           ("predict", [name for name in self.prediction_datasets() if name not in scored])):
            for name in names:
                uses.setdefault(name, []).append(use)
        return [{"dataset": name, "use": ", ".join(use), "images": self.dataset(name)["images"],
                 "slices": str(self.dataset(name)["slices"]) or "all"} for name, use in uses.items()]

    def model_origins(self) -> dict[str, str]:
        """Where each model comes from, for the report: trained here, fine-tuned from a file, or a file applied."""
        origins = {}
        for model in self.active_models():
            if self.pretrained_file(model):
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
                        for model in self.active_models() if self.pretrained_file(model)]

    # settings

    def model_train_settings(self, model: str) -> dict:
        """The global train section with the model's own overrides, checked against the schema."""
        overrides = self.config["models"][model].get("train", {})
        try:
            return settings.section("train", {**self.config["train"], **overrides})
        except InputError as error:
            raise InputError(str(error).replace("config: train", f"config: models.{model}.train", 1)) from None

    def model_architecture(self, model: str) -> dict:
        """The architecture keys of a model's entry (none for a fine-tuned model: its file's)."""
        return {key: value for key, value in self.config["models"][model].items()
                if key not in (*MODEL_SETTING_SECTIONS, "start_from")}

    def model_sample_sizes(self, model: str) -> tuple:
        """(input, output) tiles of the model's training samples: its own output_size
        (models.<name>.augment.output_size, else augment.output_size), made valid for it; edges
        of square tiles in 2-D, "ZxYxX" in 3-D (:func:`unetflow.geometry.format_size`)."""
        dims = self.config["dims"]
        try:
            architecture = start_model_of(self.start_from(model)).architecture if self.start_from(model) else \
                architectures.from_config(self.config["models"][model], num_classes=self.config["num_classes"],
                                          dims=dims, where=f"models.{model}")
        except InputError as error:
            raise InputError(f"config: models.{model}: {error}") from None
        entry = self.config["models"][model]
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
        train = self.training_datasets()
        return {
            "samples": [] if online else [self.sample_store(name, model) for name in train],
            "data": [f"results/{name}/data.zarr" for name in train] if online else [],
            "weights": [f"results/{name}/weights.zarr" for name in train] if online else [],
            "validation": [f"results/{name}/data.zarr" for name in self.validation_datasets()],
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
        return self.pretrained_file(model) or f"results/models/{model}/model.pt"

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
        return f"results/tuning/{model}/segment.json" if self.tuned() else []

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


@dataclass(frozen=True)
class Stage:
    """A rule in the provenance table: its own settings that change results, the code that
    makes its output (a step name, or a function of the plan giving one or None), and the
    outputs it reads."""

    own: Callable[..., Any]
    reads: Callable[..., list[Node]]
    code: str | Callable[..., str | None]


def _model_settings(plan: Plan, model: str) -> list:
    if plan.pretrained_file(model):
        return [{"file": plan.pretrained_file(model)}, file_fingerprint(plan.pretrained_file(model))]
    return [plan.model_architecture(model), plan.results_settings("train", plan.model_train_settings(model))]


def _model_reads(plan: Plan, model: str) -> list[Node]:
    if plan.pretrained_file(model):
        return []
    return [*(Node.of("augment", dataset=name, model=model) for name in plan.training_datasets()),
            *(Node.of("ingest", dataset=name) for name in plan.validation_datasets())]


STAGES: dict[str, Stage] = {
    "ingest": Stage(own=lambda plan, dataset: plan.ingest_settings(dataset), reads=lambda plan, dataset: [],
                    code="ingest"),
    "weights": Stage(own=lambda plan, dataset: plan.config["weights"],
                     reads=lambda plan, dataset: [Node.of("ingest", dataset=dataset)], code="weights"),
    "augment": Stage(own=lambda plan, dataset, model: [plan.config["augment"]["mode"], plan.augment_settings(),
                                                       plan.model_sample_sizes(model)],
                     reads=lambda plan, dataset, model=None: [Node.of("weights", dataset=dataset)],
                     code=lambda plan, **keys: None if plan.config["augment"]["mode"] == "online" else "augment"),
    "train": Stage(own=_model_settings, reads=_model_reads,
                   code=lambda plan, model: None if plan.pretrained_file(model) else "train"),
    "predict": Stage(own=lambda plan, model, dataset: plan.results_settings("predict"),
                     reads=lambda plan, model, dataset: [Node.of("train", model=model),
                                                         Node.of("ingest", dataset=dataset)], code="predict"),
    "tune": Stage(own=lambda plan, model: plan.config["tune"],
                  reads=lambda plan, model: [Node.of("predict", model=model, dataset=name)
                                             for name in plan.validation_datasets()], code="tune"),
    "segment": Stage(own=lambda plan, model, dataset: plan.segment_settings(),
                     reads=lambda plan, model, dataset: [Node.of("predict", model=model, dataset=dataset)]
                     + ([Node.of("tune", model=model)] if plan.tuned() else []), code="segment"),
    "evaluate": Stage(own=lambda plan, model, dataset: None,
                      reads=lambda plan, model, dataset: [Node.of("segment", model=model, dataset=dataset)],
                      code="evaluate"),
    "report": Stage(own=lambda plan: None,
                    reads=lambda plan: [Node.of("evaluate" if name in plan.evaluated_datasets() else "segment",
                                                model=model, dataset=name)
                                        for model in plan.active_models() for name in plan.prediction_datasets()],
                    code="report"),
}


@functools.cache  # the sources do not change while the DAG is built
def code_of(step: str) -> str:
    """Hash of the code that runs for ``step`` (:func:`unetflow.fingerprints.code_fingerprint`)."""
    return code_fingerprint(step)


@functools.cache  # a model file is hashed once per DAG, not once per job that uses it
def file_fingerprint(path: str) -> str:
    return store_fingerprint(Path(path))


@functools.cache
def start_model_of(path: str):
    """The architecture and weights of a start_from file (:mod:`unetflow.start_model`), read once."""
    from . import start_model  # torch, only when a model is fine-tuned

    return start_model.read(path)
