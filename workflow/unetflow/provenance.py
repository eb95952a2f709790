"""Provenance: for each rule, the settings of its own that change its results and the outputs
it reads (:data:`STAGES`), from which :meth:`unetflow.plan.Plan.provenance` hashes what every
output depends on.

A node's provenance is its own settings, the hash of its code
(:func:`unetflow.fingerprints.code_fingerprint`) and the provenance of everything upstream; the
plan gives each rule the hash of its inputs' provenance as its ``upstream`` param (see
:mod:`unetflow.plan`). Standard library only: Snakemake reads this while it builds the DAG.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fingerprints import code_fingerprint, store_fingerprint

Plan = Any  # a unetflow.plan.Plan, which imports this module


@dataclass(frozen=True)
class Node:
    """One output of the run: a stage (a rule) and the wildcard values that name it."""

    stage: str
    keys: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, stage: str, **keys: str) -> Node:
        return cls(stage, tuple(sorted(keys.items())))


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
    return [*(Node.of("augment", dataset=name, model=model) for name in plan.training_datasets(model)),
            *(Node.of("ingest", dataset=name) for name in plan.validation_datasets(model))]


def _prediction_reads(plan: Plan, model: str, dataset: str) -> list[Node]:
    if plan.is_ensemble(model):
        return [Node.of("predict", model=member, dataset=dataset) for member in plan.members(model)]
    return [Node.of("train", model=model), Node.of("ingest", dataset=dataset)]


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
    # an ensemble's predictions are its members' mean (the ensemble rule)
    "predict": Stage(own=lambda plan, model, dataset: None if plan.is_ensemble(model)
                     else plan.results_settings("predict"), reads=_prediction_reads,
                     code=lambda plan, model, dataset: "ensemble" if plan.is_ensemble(model) else "predict"),
    "tune": Stage(own=lambda plan, model: plan.config["tune"],
                  reads=lambda plan, model: [Node.of("predict", model=name, dataset=dataset)
                                             for name, dataset in plan.tuning_pairs(model)], code="tune"),
    "segment": Stage(own=lambda plan, model, dataset: plan.segment_settings(),
                     reads=lambda plan, model, dataset: [Node.of("predict", model=model, dataset=dataset)]
                     + ([Node.of("tune", model=plan.tuning_model(model))] if plan.tuned() else []), code="segment"),
    "evaluate": Stage(own=lambda plan, model, dataset: None,
                      reads=lambda plan, model, dataset: [Node.of("segment", model=model, dataset=dataset)],
                      code="evaluate"),
    "report": Stage(own=lambda plan: None,
                    reads=lambda plan: [Node.of("evaluate" if name in plan.evaluated_datasets() else "segment",
                                                model=model, dataset=name)
                                        for model in plan.active_models() for name in plan.prediction_datasets()]
                    + [Node.of("evaluate", model=model, dataset=name)
                       for pairs in plan.cross_validation().values() for model, name in pairs],
                    code="report"),
}


@functools.cache  # the sources do not change while the DAG is built
def code_of(step: str) -> str:
    """Hash of the code that runs for ``step`` (:func:`unetflow.fingerprints.code_fingerprint`)."""
    return code_fingerprint(step)


@functools.cache  # a model file is hashed once per DAG, not once per job that uses it
def file_fingerprint(path: str) -> str:
    return store_fingerprint(Path(path))
