"""Bad input, interruptions, concurrency and determinism, through the snakemake CLI.

Each bad input must fail its rule with a message naming the file and the fix,
exit non-zero, and leave no output that Snakemake or a later step would take
as complete. docs/reliability.md tabulates the cases.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
import zarr
from PIL import Image

from conftest import copy_run, copy_workflow, on_demo, snakemake, snakemake_environment

pytestmark = pytest.mark.slow

QUICK = {
    "augment": {"samples": 16},
    "train": {"iterations": 12, "batch_size": 2, "validate_every": 6, "checkpoint_every": 6, "log_every": 3},
}


def configure(directory: Path, name: str, config: dict) -> list[str]:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return on_demo(path)


def fails_with(directory: Path, target: str, config: dict, *messages: str) -> None:
    result = snakemake(directory, "--cores", "2", target, *configure(directory, "case", config), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    for message in messages:
        assert message in output, output[-3000:]
    assert not (directory / target).exists()
    assert not list((directory / target).parent.glob(f".{Path(target).name}.tmp-*"))


def stack(directory: Path, name: str, data: np.ndarray, **options) -> str:
    tifffile.imwrite(directory / name, data, **options)
    return name


def noise(shape, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 200, shape).astype(dtype)


def test_truncated_tiff(workflow_dir):
    name = stack(workflow_dir, "cut.tif", noise((3, 64, 64)), photometric="minisblack")
    path = workflow_dir / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fails_with(workflow_dir, "results/bad/data.zarr", {"datasets": {"bad": {"images": name}}},
               "cut.tif: cannot be read", "truncated or corrupt: export or copy it again")


def test_png_folder_with_a_slice_of_another_size(workflow_dir):
    (workflow_dir / "pngs").mkdir()
    for index, size in enumerate((32, 32, 40)):
        Image.fromarray(noise((size, size))).save(workflow_dir / "pngs" / f"{index}.png")
    fails_with(workflow_dir, "results/bad/data.zarr", {"datasets": {"bad": {"images": "pngs"}}},
               "pngs/2.png: slice is 40x40 but 0.png is 32x32", "crop or pad it")


def test_images_and_labels_of_different_slice_counts(workflow_dir):
    images = stack(workflow_dir, "img.tif", noise((3, 32, 32)), photometric="minisblack")
    labels = stack(workflow_dir, "lab.tif", noise((2, 32, 32)) > 100, photometric="minisblack")
    fails_with(workflow_dir, "results/bad/data.zarr", {"datasets": {"bad": {"images": images, "labels": labels}}},
               "lab.tif: labels have shape (2, 32, 32)", "give one label slice per image slice")


def test_labels_with_fractions(workflow_dir):
    images = stack(workflow_dir, "img.tif", noise((2, 32, 32)), photometric="minisblack")
    labels = stack(workflow_dir, "lab.tif", np.full((2, 32, 32), 0.5, np.float32), photometric="minisblack")
    fails_with(workflow_dir, "results/bad/data.zarr", {"datasets": {"bad": {"images": images, "labels": labels}}},
               "lab.tif (page 0): labels hold fractional", "save them as an integer type")


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_sixteen_bit_and_float32_images_work(workflow_dir, dtype):
    images = stack(workflow_dir, "img.tif", noise((2, 32, 32), dtype) * 100, photometric="minisblack")
    snakemake(workflow_dir, "--cores", "1", "results/ok/data.zarr",
              *configure(workflow_dir, "ok", {"datasets": {"ok": {"images": images}}}))
    assert zarr.open_group(str(workflow_dir / "results/ok/data.zarr"), mode="r")["0"].dtype == dtype


def test_rgb_image(workflow_dir):
    images = stack(workflow_dir, "rgb.tif", noise((2, 32, 32, 3)), photometric="rgb")
    fails_with(workflow_dir, "results/bad/data.zarr", {"datasets": {"bad": {"images": images}}},
               "rgb.tif: the TIFF has colour samples", "convert the stack to grayscale")


def test_empty_folder(workflow_dir):
    (workflow_dir / "empty").mkdir()
    fails_with(workflow_dir, "results/bad/data.zarr", {"datasets": {"bad": {"images": "empty"}}},
               "empty: the folder holds no PNG or TIFF slices", "put one 2-D image per slice")


def test_path_that_does_not_exist(workflow_dir):
    fails_with(workflow_dir, "results/bad/data.zarr", {"datasets": {"bad": {"images": "nowhere.tif"}}},
               "nowhere.tif: no such file or folder; check the path in the config's datasets section")


@pytest.mark.parametrize("config, message", [
    ({"weights": {"sigma": -1}}, "-1 is less than or equal to the minimum of 0"),
    ({"predict": {"device": "gpu0"}}, "'gpu0' does not match"),
    ({"train": {"iterations": "many"}}, "'many' is not of type 'integer'"),
])
def test_config_values_of_the_wrong_type_or_range(workflow_dir, config, message):
    result = snakemake(workflow_dir, "-n", *configure(workflow_dir, "bad", config), check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A workflow copy with the quick demo model trained and the test data ingested."""
    directory = copy_workflow(tmp_path_factory.mktemp("trained") / "workflow")
    snakemake(directory, "--cores", "2", "results/models/small/model.pt", "results/demo_test/data.zarr",
              *configure(directory, "quick", QUICK))
    return directory


PREDICTION = "results/predictions/small/demo_test.zarr"


def test_tile_smaller_than_the_network_margin(trained):
    fails_with(trained, PREDICTION, {**QUICK, "predict": {"tile": 20}},
               "tile 20 px is smaller than the network's margin of 44 px", "set predict.tile to at least 44")


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(b"\x00" * 100), "not a readable model file"),
    (lambda path: torch.save({**torch.load(path.with_suffix(".good")), "arguments": {"depth": 2, "base_channels": 8}},
                             path), "its weights do not fit its architecture"),
    (lambda path: torch.save(with_nan_weights(torch.load(path.with_suffix(".good"), weights_only=False)), path),
     "hold NaN or infinity"),
])
def test_corrupted_model_or_one_of_another_architecture(trained, damage, message):
    model = trained / "results/models/small/model.pt"
    good = model.with_suffix(".good")
    if not good.exists():
        good.write_bytes(model.read_bytes())
    try:
        damage(model)
        fails_with(trained, PREDICTION, QUICK, "model.pt", message)
    finally:
        model.write_bytes(good.read_bytes())


def with_nan_weights(saved: dict) -> dict:
    saved["state_dict"]["head.bias"][:] = float("nan")
    return saved


def test_diverging_training_fails_with_the_message_and_no_model(workflow_dir):
    diverging = {**QUICK, "train": {**QUICK["train"], "optimizer": "sgd", "lr": 1e4, "max_nonfinite_steps": 4}}
    fails_with(workflow_dir, "results/models/small/model.pt", diverging,
               "training of model 'small' diverged at iteration", "No model.pt was written",
               "Fix: lower the learning rate (models.small.train.lr, or train.lr for every model)")
    log = (workflow_dir / "logs/train/small.log").read_text()
    assert "steps skipped since the last report (non-finite loss or gradient; last loss nan" in log


def test_nan_probabilities_stop_segment_in_seconds_with_no_store(trained):
    snakemake(trained, "--cores", "2", PREDICTION, *configure(trained, "quick", QUICK))
    probabilities = zarr.open_group(str(trained / PREDICTION), mode="r+")["0"]
    probabilities[:, 2] = np.nan
    try:
        started = time.monotonic()
        fails_with(trained, "results/segmentation/small/demo_test.zarr", QUICK,
                   "demo_test.zarr/0: slice 2 (class 1) holds 65536 non-finite probabilities",
                   "retrain the model and rerun predict")
        assert time.monotonic() - started < 60
    finally:
        shutil.rmtree(trained / PREDICTION)  # later tests expect the trained fixture without predictions


def test_zarr_store_with_a_missing_chunk(trained):
    chunk = trained / "results/demo_test/data.zarr/0/2.0.0"
    saved = chunk.read_bytes()
    chunk.unlink()
    try:
        fails_with(trained, PREDICTION, QUICK, "data.zarr/0: 1 of 4 chunks are missing", "delete the store and rerun")
    finally:
        chunk.write_bytes(saved)


def start(directory: Path, *arguments: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snakemake", *arguments], cwd=directory, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env=snakemake_environment(arguments))


def wait_for(path: Path, text: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear in {path}")


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # snakemake and the job it runs, no clean-up
    process.wait()


def killed_then_rerun(directory: Path, target: str, options: list[str], running) -> None:
    """Start the job of ``target``, kill -9 it once ``running()`` says it is at work, rerun it."""
    process = start(directory, "--cores", "1", target, *options)
    deadline = time.monotonic() + 300
    while not running() and time.monotonic() < deadline:
        time.sleep(0.05)
    kill(process)
    assert not (directory / target).exists(), "the job finished before it was killed: give it more work"
    snakemake(directory, "--unlock", target, *options)
    snakemake(directory, "--cores", "1", target, *options)


def writing(store: Path):
    return lambda: any(store.parent.glob(f".{store.name}.tmp-*"))


def a_while_after_start(log: Path, seconds: float):
    started = []

    def running() -> bool:
        if log.exists() and not started:
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] > seconds
    return running


# the quick demo's data and samples (the trained fixture's), trained long enough to be killed at iteration 25
# with a checkpoint at 20 behind it
LONGER = {**QUICK, "train": {**QUICK["train"], "iterations": 30, "checkpoint_every": 10, "log_every": 5,
                             "validate_every": 15}}
KILLED_AT = "iteration 25/30"
MODEL = "results/models/small/model.pt"


def state_dict(path: Path) -> dict:
    return torch.load(path, weights_only=False)["state_dict"]


def killed_longer_training(trained: Path, work: Path, name: str = "longer") -> list[str]:
    """A copy at ``work`` of the trained fixture's run whose LONGER training was killed (-9) at KILLED_AT,
    its checkpoint of iteration 20 left behind and the lock removed; the Snakemake arguments it ran with."""
    copy_run(trained, work)
    options = ["--cores", "2", MODEL, *configure(work, name, LONGER)]
    process = start(work, *options)
    wait_for(work / "logs/train/small.log", KILLED_AT)
    kill(process)
    assert not (work / MODEL).exists() and (work / "results/models/small/checkpoint.pt").exists()
    snakemake(work, "--unlock", *options[2:])
    return options


def test_killed_training_resumes_from_its_checkpoint_with_the_same_weights(trained, tmp_path):
    whole = copy_run(trained, tmp_path / "whole")
    snakemake(whole, "--cores", "2", MODEL, *configure(whole, "longer", LONGER))
    killed = tmp_path / "killed"
    snakemake(killed, *killed_longer_training(trained, killed))
    log = (killed / "logs/train/small.log").read_text()
    resumed_at = int(log.split("at iteration ")[1].split()[0])
    assert resumed_at == 20
    first, second = state_dict(whole / MODEL), state_dict(killed / MODEL)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_changed_augment_seed_is_neither_resumed_onto_nor_lost_by_a_kill(trained, tmp_path):
    work = tmp_path / "work"
    killed_longer_training(trained, work, "seed0")
    seed1 = configure(work, "seed1", {**LONGER, "augment": {**LONGER["augment"], "seed": 1}})
    snakemake(work, "--cores", "2", MODEL, *seed1)  # new samples: the checkpoint is not theirs
    log = (work / "logs/train/small.log").read_text()
    assert "belongs to other settings, data or code; training starts from iteration 0" in log and "resuming" not in log

    seed2 = configure(work, "seed2", {**LONGER, "augment": {"samples": 400, "seed": 2}})
    process = start(work, "--cores", "2", MODEL, *seed2)
    wait_for(work / "logs/augment/demo_train/188-100.log", "samples of")
    kill(process)  # inside augment: its old store is gone, the model is still seed 1's
    snakemake(work, "--unlock", MODEL, *seed2)
    pending = snakemake(work, "-n", MODEL, *seed2).stdout
    assert re.search(r"^augment\s+1$", pending, re.M) and re.search(r"^train\s+1$", pending, re.M), pending


def test_a_run_killed_then_rerun_after_a_training_code_edit_starts_from_scratch(trained, tmp_path):
    work = tmp_path / "work"
    options = killed_longer_training(trained, work)
    optimisation = work / "workflow/unetflow/optimisation.py"  # computes the training steps
    optimisation.write_text(optimisation.read_text() + "\nEDITED = True\n")
    snakemake(work, *options)
    log = (work / "logs/train/small.log").read_text()
    assert "belongs to other settings, data or code; training starts from iteration 0" in log
    assert "resuming" not in log


def test_killed_prediction_reruns_to_the_same_output(trained, tmp_path):
    options = configure(trained, "tta", {**QUICK, "predict": {"test_time_augmentation": True}})
    killed_then_rerun(trained, PREDICTION, options, writing(trained / PREDICTION))
    rerun = zarr.open_group(str(trained / PREDICTION), mode="r")["0"][:]
    from unetflow.steps.predict import main as predict_main

    predict_main([str(trained / "results/models/small/model.pt"), str(trained / "results/demo_test/data.zarr"),
                  str(tmp_path / "reference.zarr"), "--settings", '{"test_time_augmentation": true, "tile": 256}'])
    reference = zarr.open_group(str(tmp_path / "reference.zarr"), mode="r")["0"][:]
    np.testing.assert_allclose(rerun, reference, atol=1e-6)


def test_a_second_run_in_the_same_directory_is_refused_by_the_lock(tmp_path):
    directory = copy_workflow(tmp_path / "locked")
    options = ["--cores", "2", "results/models/small/model.pt", *configure(directory, "quick", QUICK)]
    first = start(directory, *options)
    deadline = time.monotonic() + 120
    while not list((directory / ".snakemake/locks").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    second = snakemake(directory, *options, check=False)
    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stdout + second.stderr
    output, _ = first.communicate(timeout=900)
    assert first.returncode == 0, output[-2000:]
    assert (directory / "results/models/small/model.pt").exists()


def test_two_runs_with_one_seed_give_identical_results(trained, tmp_path):
    """A fresh run of the trained fixture's config equals it: weights, samples, model and prediction."""
    fresh = copy_workflow(tmp_path / "fresh")
    runs = (trained, fresh)
    for run in runs:
        snakemake(run, "--cores", "2", PREDICTION, *configure(run, "quick", QUICK))  # all it compares
    for store, arrays in (("results/demo_train/weights.zarr", ["0"]),
                          ("results/demo_train/augmented/188-100.zarr", ["image", "labels", "weights"])):
        a, b = (zarr.open_group(str(run / store), mode="r") for run in runs)
        for name in arrays:
            np.testing.assert_array_equal(a[name][:], b[name][:])
    one, two = (state_dict(run / "results/models/small/model.pt") for run in runs)
    assert all(torch.equal(one[name], two[name]) for name in one)
    a, b = (zarr.open_group(str(run / PREDICTION), mode="r")["0"][:] for run in runs)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_tiny_elongated_and_constant_stacks_with_a_tile_larger_than_the_slice(trained):
    stacks = {"tiny": noise((2, 16, 16)), "elongated": noise((1, 64, 2000)), "constant": np.full((3, 32, 48), 7, np.uint8)}
    datasets = {name: {"images": stack(trained, f"{name}.tif", data, photometric="minisblack")}
                for name, data in stacks.items()}
    targets = [f"results/segmentation/small/{name}.zarr" for name in stacks]
    snakemake(trained, "--cores", "2", *targets,
              *configure(trained, "shapes", {**QUICK, "datasets": datasets, "predict": {"tile": 512}}))
    for name, data in stacks.items():
        probabilities = zarr.open_group(str(trained / f"results/predictions/small/{name}.zarr"))["0"][:]
        assert probabilities.shape == (2, *data.shape) and np.isfinite(probabilities).all()
        np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
        objects = zarr.open_group(str(trained / f"results/segmentation/small/{name}.zarr"))["0"]
        assert objects.shape == data.shape


def test_killed_segment_and_evaluate_rerun_to_the_same_output(trained, tmp_path):
    from unetflow.synthetic import generate_stack

    images, _, instances = generate_stack(24, 512, seed=5, split="test")
    images, instances = stack(trained, "many.tif", images), stack(trained, "many-labels.tif", instances)
    datasets = {"many": {"images": images},  # segment: 24 slices take seconds
                "few": {"images": images, "labels": instances, "slices": "0-2"}}  # evaluate: seconds a slice
    options = configure(trained, "many", {**QUICK, "datasets": datasets})
    segmentation, evaluation = "results/segmentation/small/many.zarr", "results/evaluation/small/few.csv"
    snakemake(trained, "--cores", "2", "results/predictions/small/many.zarr", "results/segmentation/small/few.zarr",
              *options)
    cases = (("segment", segmentation, writing(trained / segmentation)),
             ("evaluate", evaluation, a_while_after_start(trained / "logs/evaluate/small/few.log", 4)))
    for step, target, running in cases:
        killed_then_rerun(trained, target, options, running)
        rerun = tmp_path / Path(target).name
        shutil.copytree(trained / target, rerun) if step == "segment" else shutil.copy(trained / target, rerun)
        snakemake(trained, "--cores", "2", target, *options, "--forcerun", step)  # uninterrupted
        if step == "segment":
            np.testing.assert_array_equal(zarr.open_group(str(rerun))["0"][:],
                                          zarr.open_group(str(trained / target))["0"][:])
        else:
            assert rerun.read_text() == (trained / target).read_text()
