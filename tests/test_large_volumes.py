"""A volume larger than a block through the workflow: split into parts, and under a memory limit that
the whole-volume path exceeds (a cgroup, as tests/test_memory.py; skipped where none can be made)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml
import zarr

from conftest import copy_workflow, planned_jobs, snakemake_environment
from test_memory import MB, memory_cgroup
from unetflow import inference
from unetflow.methods.architectures import ModelConfig
from unetflow.synthetic import generate_volume

pytestmark = pytest.mark.slow


def volume_inputs(folder: Path, depth: int, size: int) -> Path:
    """A synthetic EM-like volume with its binary labels, and an untrained tiny 3-D U-Net."""
    folder.mkdir(parents=True, exist_ok=True)
    image, binary, _ = generate_volume(depth, size, seed=5)
    tifffile.imwrite(folder / "volume.tif", image, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(folder / "labels.tif", binary, imagej=True, metadata={"axes": "ZYX"})
    architecture = ModelConfig(depth=1, base_channels=4, dropout=0.0, dims=3)
    torch.manual_seed(0)
    inference.save_model(folder / "model.pt", architecture, architecture.network())
    return folder


def configure(directory: Path, inputs: Path, parts: int, halo: int = 8) -> list[str]:
    config = {"dims": 3, "datasets": {"big": {"images": str(inputs / "volume.tif"), "labels": str(inputs / "labels.tif"),
                                              "voxel_size": {"z": 8, "y": 8, "x": 8, "unit": "nanometer"}}},
              "models": {"mine": {"file": str(inputs / "model.pt")}}, "run_models": ["mine"], "train_on": [],
              "validate_on": [], "predict_on": ["big"], "predict": {"parts": parts, "tile": 48},
              "segment": {"settings": "fixed", "method": "watershed", "seeds": "probability", "h": 0.1,
                          "threshold": 0.5}, "blocks": {"halo": halo}}
    (directory / "big.yaml").write_text(yaml.safe_dump(config))
    return ["--configfile", str(directory / "big.yaml")]


def stores(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    return tuple(zarr.open_group(str(directory / f"results/{kind}/mine/big.zarr"), mode="r")["0"][:]
                 for kind in ("predictions", "segmentation"))


def test_parts_of_a_volume_give_one_jobs_probabilities_and_segmentation(tmp_path):
    inputs = volume_inputs(tmp_path / "inputs", 256, 48)  # two chunks (and block rows) deep
    runs = {}
    for parts in (1, 3):
        directory = copy_workflow(tmp_path / f"parts-{parts}")
        options = configure(directory, inputs, parts)
        jobs = planned_jobs(directory, *options)
        if parts == 3:
            assert (jobs["predict"], jobs["segment"], jobs["merge_predictions"], jobs["merge_segmentation"]) == \
                (3, 3, 1, 1)
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *options], cwd=directory, check=True,
                       capture_output=True, env=snakemake_environment(options))
        runs[parts] = stores(directory)
    assert np.array_equal(runs[3][0], runs[1][0])  # probabilities, bit for bit
    assert np.array_equal(runs[3][1], runs[1][1])  # objects, and their numbers
    assert runs[1][1].max() > 20


LIMIT_MB = 1200


def run_in_cgroup(limit_mb: int, arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    procs = memory_cgroup(limit_mb * MB)
    script = f'echo $$ > {procs} && exec "$0" "$@"'
    try:
        return subprocess.run(["sh", "-c", script, sys.executable, *arguments], cwd=cwd, capture_output=True,
                              text=True, timeout=1800)
    finally:
        try:
            procs.parent.rmdir()
        except OSError:
            pass


def test_predict_segment_and_evaluate_a_volume_within_a_memory_limit_the_whole_volume_exceeds(tmp_path):
    """192 x 256 x 256 voxels: a whole-volume watershed needs about 1.7 GB (140 bytes a voxel); every
    job of the workflow, one at a time under one 1.2 GB limit with Snakemake itself, runs in blocks."""
    inputs = volume_inputs(tmp_path / "inputs", 192, 256)
    directory = copy_workflow(tmp_path / "workflow")
    options = configure(directory, inputs, parts=2)
    run = run_in_cgroup(LIMIT_MB, ["-m", "snakemake", "--cores", "1", *options], directory)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    table = pd.read_csv(directory / "results/evaluation/mine/big.csv", dtype={"slice": str})
    assert list(table["slice"])[-2:] == ["all", "volume"]
    volume = table.iloc[-1]
    assert np.isfinite(volume["adapted_rand_error"]) and "whole volume" in volume["note"]
    segmentation = zarr.open_group(str(directory / "results/segmentation/mine/big.zarr"), mode="r")["0"]
    assert segmentation.chunks == (128, 128, 128) and segmentation[:].max() > 0
    # the same segmentation in one piece, under the same limit, does not fit
    whole = run_in_cgroup(LIMIT_MB, ["-m", "unetflow.steps.segment", "results/predictions/mine/big.zarr",
                                     str(tmp_path / "whole.zarr"), "--dims", "3", "--blocks", json.dumps({"edge": 10**4}),
                                     "--settings", json.dumps({"settings": "fixed", "seeds": "probability", "h": 0.1})],
                          directory)
    assert whole.returncode != 0 and not (tmp_path / "whole.zarr").exists()
    shutil.rmtree(directory / "results")
