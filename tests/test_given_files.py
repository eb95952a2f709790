"""Nothing the config cannot rebuild is ever replaced or deleted: a trained model applied from
its results/ path, a train job without data, and a real retraining (which keeps the old model).

The replays start from the demos' complete runs (conftest), copied, and run the snakemake
CLI the way a user would: a second config on top of the demo's, in the same folder.
"""

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from conftest import copy_run, copy_workflow, on_demo, planned_jobs, snakemake
from unetflow import model_versions

pytestmark = pytest.mark.slow

TRAIN_OUTPUTS = ("model.pt", "metrics.csv", "loss.png")


def write_config(directory: Path, name: str, config: dict) -> str:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (links not followed), by relative path."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink()}


def probabilities(run: Path, model: str, dataset: str) -> np.ndarray:
    return zarr.open_group(str(run / f"results/predictions/{model}/{dataset}.zarr"), mode="r")["0"][:]


def apply_only(model_file: str, dataset: dict) -> dict:
    """The issue's predict-only config: a given model applied to a new stack, nothing trained."""
    return {"datasets": {"big": dataset}, "models": {"given": {"file": model_file}}, "run_models": ["given"],
            "train_on": [], "validate_on": [], "predict_on": ["big"], "segment": {"settings": "fixed"}}


def test_applying_the_2d_demos_model_from_its_results_path_keeps_it_and_trains_nothing(demo_run, tmp_path):
    applying_a_model_from_its_results_path_keeps_it(demo_run, tmp_path, ["config/config.yaml"], "small",
                                                     "resources/demo/test-volume.tif", "demo_test")


def test_applying_the_3d_demos_model_from_its_results_path_keeps_it_and_trains_nothing(demo3d_run, tmp_path):
    applying_a_model_from_its_results_path_keeps_it(demo3d_run, tmp_path, ["config/demo3d.yaml"], "small3d",
                                                     "resources/demo3d/test-volume.tif", "demo3d_test")


def applying_a_model_from_its_results_path_keeps_it(demo: Path, tmp_path: Path, demo_config: list[str], model: str,
                                                    test_stack: str, demo_test: str) -> None:
    run = copy_run(demo, tmp_path / "run")
    model_dir = run / "results/models" / model
    before = digests(model_dir)
    config = apply_only(f"results/models/{model}/model.pt", {"images": test_stack})
    options = ["--configfile", *demo_config, write_config(run, "big", config)]

    assert planned_jobs(run, *options) == Counter({"ingest": 1, "predict": 1, "segment": 1, "view": 1, "report": 1,
                                                  "all": 1})
    snakemake(run, "--cores", "2", *options)

    assert digests(model_dir) == before  # model.pt, metrics.csv and loss.png, byte for byte
    np.testing.assert_array_equal(probabilities(run, "given", "big"), probabilities(run, model, demo_test))
    assert (run / "results/segmentation/given/big.zarr").is_dir()
    assert "train" not in planned_jobs(run, "--configfile", *demo_config)


def test_a_model_of_another_run_and_a_copy_outside_results_are_applied_and_kept(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    outside = tmp_path / "shared models" / "model.pt"
    outside.parent.mkdir()
    outside.write_bytes((run / "results/models/small/model.pt").read_bytes())
    before, given = digests(run / "results/models/small"), outside.read_bytes()
    # another run's model at its results/ path, and a copy elsewhere; this config's own train settings differ
    # from those small was trained with; the demo's datasets: tuned on demo_val with each model, demo_test predicted
    config = {"models": {"x": {"file": "results/models/small/model.pt"}, "y": {"file": str(outside)}},
              "run_models": ["x", "y"], "train": {"iterations": 50}}
    options = on_demo(write_config(run, "xy", config))

    assert planned_jobs(run, *options) == Counter({"predict": 4, "tune": 2, "segment": 2, "evaluate": 2, "view": 2,
                                                  "report": 1, "all": 1})
    snakemake(run, "--cores", "2", *options)

    assert outside.read_bytes() == given and digests(run / "results/models/small") == before
    for model in ("x", "y"):
        np.testing.assert_array_equal(probabilities(run, model, "demo_test"), probabilities(run, "small", "demo_test"))


def test_a_model_this_config_trains_cannot_also_be_given_as_a_file(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    config = {"models": {"given": {"file": "results/models/small/model.pt"}}, "run_models": ["small", "given"]}
    result = snakemake(run, "-n", *on_demo(write_config(run, "both", config)), check=False)
    assert result.returncode != 0
    assert ("models.given.file: results/models/small/model.pt is an output of this workflow's train rule, which would "
            "replace or delete it whenever that rule reruns") in " ".join((result.stdout + result.stderr).split())


def test_a_stack_that_this_run_writes_is_refused_as_a_dataset(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    config = {"datasets": {"again": {"images": "results/demo_test/data.zarr"}}, "predict_on": ["demo_test", "again"]}
    result = snakemake(run, "-n", *on_demo(write_config(run, "again", config)), check=False)
    assert result.returncode != 0
    assert ("datasets.again.images: results/demo_test/data.zarr is an output of this workflow's ingest rule"
            in " ".join((result.stdout + result.stderr).split()))


def test_a_train_job_without_training_data_is_refused_and_deletes_nothing(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    before = digests(run / "results")
    result = snakemake(run, "--cores", "2", *on_demo(write_config(run, "none", {"train_on": []})), check=False)
    assert result.returncode != 0
    assert "train_on is missing or empty, so the models have nothing to train on" in " ".join(
        (result.stdout + result.stderr).split())
    assert digests(run / "results") == before

    # the step itself, run by hand on the model's folder: refused before it writes anything
    import subprocess
    import sys

    by_hand = subprocess.run([sys.executable, "-m", "unetflow.steps.train", "--out-dir", "results/models/small",
                              "--model", '{"depth": 3, "base_channels": 16}'], cwd=run, capture_output=True, text=True)
    assert by_hand.returncode != 0
    assert "model 'small': no training data (--samples name no store): the config's train_on names no dataset" in \
        by_hand.stderr
    assert digests(run / "results") == before


QUICK = {"augment": {"samples": 16}, "train": {"iterations": 6, "batch_size": 2, "validate_every": 6}}


def test_a_real_retraining_runs_and_the_earlier_model_is_kept(tmp_path):
    run = copy_workflow(tmp_path / "run")
    target = "results/models/small/model.pt"
    snakemake(run, "--cores", "2", target, *on_demo(write_config(run, "quick", QUICK)))
    first = (run / target).read_bytes()
    [kept] = model_versions.versions(run / "results/models/small")
    assert (kept / "model.pt").stat().st_ino == (run / target).stat().st_ino  # a hard link, not a copy

    changed = {**QUICK, "train": {**QUICK["train"], "lr": 0.001}}
    options = on_demo(write_config(run, "changed", changed))
    assert planned_jobs(run, target, *options) == Counter({"train": 1})
    snakemake(run, "--cores", "2", target, *options)

    second = (run / target).read_bytes()
    assert second != first
    earlier, newest = model_versions.versions(run / "results/models/small")
    assert (earlier / "model.pt").read_bytes() == first and (newest / "model.pt").read_bytes() == second
    assert {path.name for path in earlier.iterdir()} == set(TRAIN_OUTPUTS)
    assert planned_jobs(run, target, *options) == Counter()  # versions/ is no output: nothing is stale
