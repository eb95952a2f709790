"""Cross-validation folds (unetflow.folds): contiguous slabs that are disjoint and cover the
labelled slices, and the plan's fold models, datasets and tuning data."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from unetflow import folds, plan_checks, settings
from unetflow.config_checks import parse_slice_selection
from unetflow.errors import InputError
from unetflow.plan import Plan
from unetflow.provenance import Node

DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("count", [2, 3, 7, 10, 18, 22])
def test_slabs_are_contiguous_disjoint_cover_and_differ_in_size_by_at_most_one(count):
    for k in range(1, count + 1):
        slabs = folds.contiguous_slabs(count, k)
        assert len(slabs) == k
        assert [position for slab in slabs for position in slab] == list(range(count))  # disjoint, cover, in order
        assert all(slab.step == 1 and len(slab) > 0 for slab in slabs)
        assert max(map(len, slabs)) - min(map(len, slabs)) <= 1


def test_more_slabs_than_slices_are_refused():
    with pytest.raises(ValueError):
        folds.contiguous_slabs(3, 4)


@pytest.mark.parametrize("indices", [[0], [0, 1, 2], [0, 1, 2, 6, 8, 9], [3, 5, 7], list(range(30))])
def test_a_formatted_selection_reads_back_as_the_same_slices(indices):
    assert parse_slice_selection(folds.format_slices(indices), "test") == indices


def entry(slices: str, images: str = "stack.tif") -> dict:
    return {"images": images, "labels": "labels.tif", "slices": slices, "voxel_size": {}}


def test_folds_split_the_pooled_slices_into_held_out_slabs_and_train_on_the_rest():
    datasets = {"train": entry("0-14"), "val": entry("15-17"), "other": entry("0-3", images="other.tif")}
    pool = folds.pooled_stacks(["train", "val", "other"], datasets, count_slices=lambda name: 0)
    assert [(name, indices) for name, _, indices in pool] == [("train", list(range(18))), ("other", [0, 1, 2, 3])]
    everything = {(stack, index) for stack, _, indices in pool for index in indices}
    for k in (2, 3, 5, 22):
        split = folds.split("m", k, pool)
        held_out_per_fold = []
        for fold in split:
            held = {(entry["images"], index) for entry in fold.held_out.values()
                    for index in parse_slice_selection(entry["slices"], "test")}
            trained = {(entry["images"], index) for entry in fold.train.values()
                       for index in parse_slice_selection(entry["slices"], "test")}
            assert held and trained and not held & trained
            assert len(held | trained) == len(everything)  # every pooled slice, once
            held_out_per_fold.append(held)
        assert sum(map(len, held_out_per_fold)) == len(everything)  # the held-out slabs partition the pool
        assert {fold.model for fold in split} == {f"m-fold{number}" for number in range(1, k + 1)}


def test_a_held_out_slab_is_consecutive_slices_of_its_stack():
    pool = folds.pooled_stacks(["a"], {"a": entry("")}, count_slices=lambda name: 22)
    for fold in folds.split("m", 5, pool):
        (held,) = fold.held_out.values()
        indices = parse_slice_selection(held["slices"], "test")
        assert indices == list(range(indices[0], indices[-1] + 1))


def plan_with(models: dict, **changes) -> Plan:
    config = copy.deepcopy(DEMO) | {"models": models, "run_models": list(models)} | changes
    return Plan(settings.whole_config(config))


SMALL = DEMO["models"]["small"]


def test_a_model_with_folds_is_the_ensemble_of_fold_models_tuned_on_their_held_out_slabs():
    plan = plan_with({"cv": {**SMALL, "folds": 3}})
    assert plan.members("cv") == ["cv-fold1", "cv-fold2", "cv-fold3"]
    assert plan.trained_models() == ["cv-fold1", "cv-fold2", "cv-fold3"]
    assert plan.ensembles() == ["cv"]
    # demo_train 0-7 and demo_val 8-9 are one stack: slabs 0-3, 4-6, 7-9
    held = [plan.dataset(name)["slices"] for _, name in plan.tuning_pairs("cv")]
    assert held == ["0-3", "4-6", "7-9"]
    assert [model for model, _ in plan.tuning_pairs("cv")] == plan.members("cv")
    assert plan.training_datasets("cv-fold2") == ["cv-fold2-train-demo_train"]
    assert plan.dataset("cv-fold2-train-demo_train")["slices"] == "0-3,7-9"
    assert plan.validation_datasets("cv-fold2") == ["cv-fold2-heldout-demo_train"]
    assert plan.model_architecture("cv-fold1") == SMALL
    assert plan.tuned_settings("cv-fold1") == "results/tuning/cv/segment.json"
    with pytest.raises(InputError, match="ensemble"):
        plan.model_file("cv")
    plan_checks.check(plan)


def test_the_ensembles_predictions_read_its_members_and_a_members_training_changes_them():
    plan = plan_with({"cv": {**SMALL, "folds": 2}, "pair": {"ensemble": ["a", "b"]}, "a": SMALL, "b": SMALL},
                     run_models=["cv", "pair"])
    assert plan.used_models() == ["cv-fold1", "cv-fold2", "cv", "a", "b", "pair"]
    reads = [node for node in plan.provenance(Node.of("predict", model="pair", dataset="demo_test"))[3]]
    assert [read[0] for read in reads] == ["predict", "predict"]
    changed = plan_with({"cv": {**SMALL, "folds": 2}, "pair": {"ensemble": ["a", "b"]}, "a": SMALL,
                         "b": {**SMALL, "depth": 2}}, run_models=["cv", "pair"])
    assert plan.upstream_hash("predict", model="pair", dataset="demo_test") != \
        changed.upstream_hash("predict", model="pair", dataset="demo_test")
    assert plan.upstream_hash("predict", model="cv", dataset="demo_test") == \
        changed.upstream_hash("predict", model="cv", dataset="demo_test")


@pytest.mark.parametrize("models, changes, message", [
    ({"e": {"ensemble": ["a", "b"], "depth": 2}, "a": SMALL, "b": SMALL}, {}, "also gives depth"),
    ({"e": {"ensemble": ["a", "x"]}, "a": SMALL}, {}, "'x', which is not in models"),
    ({"e": {"ensemble": ["a", "a"]}, "a": SMALL}, {}, "names a more than once"),
    ({"e": {"ensemble": ["a", "f"]}, "a": SMALL, "f": {"ensemble": ["a", "a2"]}, "a2": SMALL}, {},
     "itself an ensemble"),
    ({"cv": {**SMALL, "folds": 11}}, {}, "at most 10 folds"),
    ({"cv": {"file": "model.pt", "folds": 2}}, {}, "folds and also file"),
    ({"cv": {**SMALL, "folds": 2}, "cv-fold1": SMALL}, {}, "rename it"),
    ({"cv": {**SMALL, "folds": 2}}, {"train_on": []}, "train_on is empty"),
])
def test_an_ensemble_or_folds_the_workflow_cannot_build_is_refused(models, changes, message):
    with pytest.raises(InputError, match=message):
        plan_checks.check(plan_with(models, **changes))


def test_folds_of_a_whole_stack_that_does_not_exist_yet_ask_for_its_slices():
    config = copy.deepcopy(DEMO)
    config["datasets"]["demo_train"]["slices"] = ""
    config["validate_on"] = []
    config["models"] = {"cv": {**SMALL, "folds": 2}}
    with pytest.raises(InputError, match=r"datasets.demo_train.slices"):
        plan_checks.check(Plan(settings.whole_config(config)))


def test_the_reports_fold_table_holds_each_folds_held_out_scores_and_their_mean_and_sd(tmp_path):
    from unetflow.steps.report import FOLD_SCORES, TABLE_COLUMNS, folds_table

    pairs = [["m-fold1", "h1"], ["m-fold2", "h2a"], ["m-fold2", "h2b"], ["m-fold3", "h3"]]
    errors = {"h1": 0.1, "h2a": 0.2, "h2b": 0.4, "h3": 0.6}  # fold 2 holds out two datasets: its score is 0.3
    for model, dataset in pairs:
        row = {column: 0.5 for column in TABLE_COLUMNS} | {"model": model, "dataset": dataset, "slice": "all",
                                                            "adapted_rand_error": errors[dataset]}
        (tmp_path / "evaluation" / model).mkdir(parents=True, exist_ok=True)
        pd.DataFrame([row, row | {"slice": "0"}]).to_csv(tmp_path / "evaluation" / model / f"{dataset}.csv",
                                                         index=False)
    table = folds_table(tmp_path, {"m": pairs})
    assert list(table["fold"]) == ["m-fold1", "m-fold2", "m-fold3", "mean ± SD over 3 folds"]
    assert table["held out"][1] == "h2a, h2b"
    assert table["adapted_rand_error"][:3].tolist() == pytest.approx([0.1, 0.3, 0.6])
    assert table["adapted_rand_error"][3] == f"{np.mean([0.1, 0.3, 0.6]):.4f} ± {np.std([0.1, 0.3, 0.6], ddof=1):.4f}"
    assert table["v_rand"][3] == "0.5000 ± 0.0000" and set(FOLD_SCORES) <= set(table.columns)
