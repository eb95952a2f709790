"""Ensembles and cross-validation folds through the snakemake CLI: an ensemble of k copies of a
model is that model, and `folds: k` trains a model per slab, tunes on the held-out slabs and
reports each fold's scores."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from conftest import copy_run, on_demo, planned_jobs, snakemake
from unetflow import io

pytestmark = pytest.mark.slow


def write_config(directory: Path, name: str, config: dict) -> str:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def level0(run: Path, kind: str, model: str, dataset: str) -> np.ndarray:
    return zarr.open_group(str(run / f"results/{kind}/{model}/{dataset}.zarr"), mode="r")["0"][:]


def test_an_ensemble_of_k_copies_of_a_model_predicts_and_segments_as_the_model(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    copies = {name: {"file": "results/models/small/model.pt"} for name in ("a", "b", "c")}
    config = {"models": {**copies, "trio": {"ensemble": ["a", "b", "c"]}}, "run_models": ["trio"]}
    options = on_demo(write_config(run, "trio", config))

    # each copy predicts the tuning and the reported data; the ensemble is tuned, segmented, evaluated
    assert planned_jobs(run, *options) == Counter({"predict": 6, "ensemble": 2, "tune": 1, "segment": 1,
                                                  "evaluate": 1, "view": 1, "report": 1, "all": 1})
    snakemake(run, "--cores", "2", *options)

    for kind in ("predictions", "segmentation"):
        np.testing.assert_array_equal(level0(run, kind, "trio", "demo_test"), level0(run, kind, "small", "demo_test"))
    report = (run / "results/report/metrics.md").read_text()
    assert "ensemble of a, b, c (mean probabilities)" in report
    assert planned_jobs(run, *options) == Counter()
    refused = snakemake(run, "-n", "results/models/trio/bioimageio.zip", *options, check=False)
    assert refused.returncode != 0 and "is an ensemble of a, b, c" in refused.stdout + refused.stderr


def test_folds_train_a_model_per_slab_tune_on_the_held_out_slabs_and_report_each_fold(workflow_dir):
    small = yaml.safe_load((workflow_dir / "config/config.yaml").read_text())["models"]["small"]
    config = {"models": {"cv": {**small, "folds": 3}}, "run_models": ["cv"], "augment": {"samples": 24},
              "train": {"iterations": 30, "validate_every": 10, "checkpoint_every": 10}}
    options = on_demo(write_config(workflow_dir, "cv", config))
    jobs = planned_jobs(workflow_dir, *options)
    assert (jobs["train"], jobs["predict"], jobs["ensemble"], jobs["tune"]) == (3, 6, 1, 1)
    assert (jobs["segment"], jobs["evaluate"]) == (4, 4)  # the ensemble on demo_test, each fold on its slab
    snakemake(workflow_dir, "--cores", "2", *options)

    # demo_train 0-7 and demo_val 8-9 are pooled: held out 0-3, 4-6, 7-9, each trained on the rest
    results = workflow_dir / "results"
    held_out = [f"cv-fold{number}-heldout-demo_train" for number in (1, 2, 3)]
    assert [io.open_raw(io.open_store(results / name / "data.zarr")).shape[-3] for name in held_out] == [4, 3, 3]
    trained = [f"cv-fold{number}-train-demo_train" for number in (1, 2, 3)]
    assert [io.open_raw(io.open_store(results / name / "data.zarr")).shape[-3] for name in trained] == [6, 7, 7]
    chosen = yaml.safe_load((results / "tuning/cv/segment.json").read_text())
    assert chosen["tuned_on"] == [f"results/{name}/data.zarr" for name in held_out] and chosen["slices"] == 10

    members = [level0(workflow_dir, "predictions", f"cv-fold{number}", "demo_test") for number in (1, 2, 3)]
    np.testing.assert_allclose(level0(workflow_dir, "predictions", "cv", "demo_test"),
                               np.mean(members, axis=0, dtype=np.float64), atol=1e-7)
    report = (results / "report/metrics.md").read_text()
    assert "Cross-validation" in report and "mean ± SD over 3 folds" in report
    for number in (1, 2, 3):
        assert f"| cv | cv-fold{number} | cv-fold{number}-heldout-demo_train |" in report
    assert planned_jobs(workflow_dir, *options) == Counter()
