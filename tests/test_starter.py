"""``unetflow init``: a config that runs, from a folder of images (and labels)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from conftest import copy_workflow, planned_jobs, snakemake
from unetflow import starter, synthetic
from unetflow.errors import InputError

OME_8NM = {"axes": "ZYX", "PhysicalSizeX": 8, "PhysicalSizeY": 8, "PhysicalSizeZ": 16, "PhysicalSizeXUnit": "nm",
           "PhysicalSizeYUnit": "nm", "PhysicalSizeZUnit": "nm"}


def slices_folder(folder: Path, count: int, labelled: int, size: int = 96) -> Path:
    """images/ with `count` 2-D TIFFs, the first `labelled` with instance labels in labels/."""
    images, binary, instances = synthetic.generate_stack(count, size, seed=3)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for index in range(count):
        tifffile.imwrite(folder / "images" / f"cells {index}.tif", images[index])
        if index < labelled:
            tifffile.imwrite(folder / "labels" / f"cells {index}.tif", instances[index])
    return folder


def volumes_folder(folder: Path, *, labelled: bool, metadata: dict = OME_8NM) -> Path:
    """Two OME-TIFF volumes side by side; the first with <name>_labels.tif beside it."""
    folder.mkdir(parents=True)
    for index, split in enumerate(("train", "test")):
        image, _, instances = synthetic.generate_volume(24, 64, seed=0, split=split)
        tifffile.imwrite(folder / f"vol{index}.ome.tif", image, metadata=metadata)
        if labelled and index == 0:
            tifffile.imwrite(folder / f"vol{index}_labels.tif", instances, metadata={"axes": "ZYX"})
    return folder


def init(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The README's command (the console script pip installs)."""
    command = shutil.which("unetflow") or pytest.fail("the unetflow command is not installed (pip install -e .)")
    result = subprocess.run([command, "init", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


def test_survey_pairs_images_and_labels_of_both_layouts(tmp_path):
    stacks = starter.survey(slices_folder(tmp_path / "lab", 4, 2))
    assert [stack.name for stack in stacks] == ["cells_0", "cells_1", "cells_2", "cells_3"]
    assert [stack.labels is not None for stack in stacks] == [True, True, False, False]
    assert stacks[0].shape == (96, 96) and stacks[0].axes == "YX" and stacks[0].voxel_size is None

    volumes = starter.survey(volumes_folder(tmp_path / "vols", labelled=True))
    assert [(stack.name, stack.labels.name if stack.labels else None) for stack in volumes] == \
        [("vol0", "vol0_labels.tif"), ("vol1", None)]
    assert volumes[0].shape == (24, 64, 64) and volumes[0].axes == "ZYX"
    assert (volumes[0].voxel_size.z, volumes[0].voxel_size.x, volumes[0].voxel_size.unit) == (16, 8, "nanometer")


def test_dims_follow_the_files_axes_and_voxel_sizes(tmp_path):
    assert starter.infer_dims(starter.survey(slices_folder(tmp_path / "slices", 2, 1)))[0] == 2
    assert starter.infer_dims(starter.survey(volumes_folder(tmp_path / "fib", labelled=True)))[0] == 3
    sections = {**OME_8NM, "PhysicalSizeZ": 50, "PhysicalSizeX": 4, "PhysicalSizeY": 4}
    dims, reason = starter.infer_dims(starter.survey(volumes_folder(tmp_path / "sstem", labelled=True,
                                                                    metadata=sections)))
    assert dims == 2 and "serial sections" in reason


def test_the_split_is_disjoint_and_covers_every_stack(tmp_path):
    stacks = starter.survey(slices_folder(tmp_path / "lab", 7, 5))
    split = starter.split(stacks)
    assert (split.train_on, split.validate_on, split.predict_on) == (
        ["cells_0", "cells_1", "cells_2", "cells_3"], ["cells_4"], ["cells_5", "cells_6"])
    one = starter.split(starter.survey(volumes_folder(tmp_path / "vols", labelled=True)))
    assert one.datasets["vol0_train"]["slices"] == "0-18" and one.datasets["vol0_val"]["slices"] == "19-23"
    assert (one.train_on, one.validate_on, one.predict_on) == (["vol0_train"], ["vol0_val"], ["vol1"])


@pytest.mark.parametrize("write, message", [
    (lambda folder: tifffile.imwrite(folder / "rgb.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb"),
     "rgb.tif: has colour samples (RGB"),
    (lambda folder: (tifffile.imwrite(folder / "a.tif", np.zeros((2, 16, 16), np.uint8), imagej=True,
                                      metadata={"axes": "CYX"}),
                     tifffile.imwrite(folder / "b.tif", np.zeros((16, 16), np.uint8))),
     "the images have different numbers of channels (a.tif 2, b.tif 1)"),
    (lambda folder: (tifffile.imwrite(folder / "a.tif", np.zeros((16, 16), np.uint8)),
                     tifffile.imwrite(folder / "a_labels.tif", np.zeros((16, 20), np.uint8))),
     "a_labels.tif: labels of shape (16, 20), but their image"),
])
def test_files_that_would_be_read_wrong_are_refused_naming_them(tmp_path, write, message):
    write(tmp_path)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        starter.survey(tmp_path)


def test_without_labels_a_model_is_needed_and_an_existing_config_is_kept(tmp_path):
    folder = volumes_folder(tmp_path / "vols", labelled=False)
    result = init(tmp_path, str(folder), check=False)
    assert result.returncode == 1 and "no labels found" in result.stderr and "--model FILE" in result.stderr
    (tmp_path / "vols.yaml").write_text("mine")
    result = init(tmp_path, str(folder), "--model", "model.pt", check=False)
    assert result.returncode == 1 and "vols.yaml: exists" in result.stderr
    assert (tmp_path / "vols.yaml").read_text() == "mine"


@pytest.mark.parametrize("dims", [2, 3])
def test_the_config_init_writes_is_accepted_as_it_is(tmp_path, dims):
    run = copy_workflow(tmp_path / "run")
    if dims == 2:
        slices_folder(run / "lab", 5, 3)
    else:
        volumes_folder(run / "lab", labelled=True)
    init(run, "lab", "--device", "cpu")
    config = yaml.safe_load((run / "lab.yaml").read_text())
    assert config["dims"] == dims and config["segment"] == {"settings": "tuned"}
    jobs = planned_jobs(run, "--configfile", "lab.yaml")
    assert jobs["train"] == 1 and jobs["tune"] == 1 and "demo_data" not in jobs
    assert jobs["segment"] == len(config["predict_on"]) == (2 if dims == 2 else 1)
    assert jobs["ingest"] == len(config["datasets"])


QUICK = {"augment": {"samples": 16}, "train": {"iterations": 6, "batch_size": 2, "validate_every": 3}}


@pytest.mark.slow
def test_from_a_folder_to_a_segmentation_and_a_model_applied_to_new_images(tmp_path):
    """The README's "Your own data": init, a full run (with a short training on top, for the
    test's time), then init --model on a folder without labels and its run."""
    run = copy_workflow(tmp_path / "run")
    slices_folder(run / "lab", 5, 3)
    init(run, "lab")
    (run / "quick.yaml").write_text(yaml.safe_dump(QUICK))
    snakemake(run, "--cores", "2", "--configfile", "lab.yaml", "quick.yaml")
    for dataset in ("cells_3", "cells_4"):
        assert (run / f"results/segmentation/unet/{dataset}.zarr").is_dir()
    assert not (run / "resources/demo").exists()
    from test_view import open_in_napari  # the README's napari command, headless

    layers = open_in_napari(run / "results/view/unet/cells_3.ome.zarr").layers
    assert layers[0].data[0].shape[-2:] == (96, 96) and "segmentation" in " ".join(layer.name for layer in layers)

    new = run / "new"
    new.mkdir()
    image = synthetic.generate_stack(1, 96, seed=9)[0][0]
    tifffile.imwrite(new / "fresh.tif", image)
    init(run, "new", "--model", "results/models/unet/model.pt")
    assert planned_jobs(run, "--configfile", "new.yaml") == Counter(
        {"ingest": 1, "predict": 1, "segment": 1, "view": 1, "report": 1, "all": 1})
    snakemake(run, "--cores", "2", "--configfile", "new.yaml")
    assert (run / "results/segmentation/unet/fresh.zarr").is_dir()


def test_a_config_of_ones_own_stands_alone(tmp_path):
    """Only the given file and the schema's defaults: none of the demo's datasets or models."""
    run = copy_workflow(tmp_path / "run")
    slices_folder(run / "lab", 2, 1)
    config = {"datasets": {"mine": {"images": "lab/images/cells 0.tif", "labels": "lab/labels/cells 0.tif"},
                           "other": {"images": "lab/images/cells 1.tif"}},
              "train_on": ["mine"], "predict_on": ["other"], "segment": {"settings": "fixed"},
              "models": {"tiny": {"depth": 2, "base_channels": 4}}}
    (run / "mine.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(run, "-n", "--configfile", "mine.yaml")
    assert "demo" not in result.stdout and "small" not in result.stdout
    assert planned_jobs(run, "--configfile", "mine.yaml") == Counter(
        {"ingest": 2, "weights": 1, "augment": 1, "train": 1, "predict": 1, "segment": 1, "view": 1, "report": 1,
         "all": 1})

    (run / "nothing.yaml").write_text(yaml.safe_dump({"datasets": config["datasets"]}))
    result = snakemake(run, "-n", "--configfile", "nothing.yaml", check=False)
    assert result.returncode != 0
    assert "train_on and predict_on are empty, so this config trains and predicts nothing; add train_on" in \
        " ".join((result.stdout + result.stderr).split())
    assert planned_jobs(run)["demo_data"] == 1  # no --configfile: the demo


def test_init_runs_as_a_module_too(tmp_path):
    folder = slices_folder(tmp_path / "lab", 3, 2)
    subprocess.run([sys.executable, "-m", "unetflow.command", "init", str(folder), "-o", "x/lab.yaml", "--device",
                    "gpu"], cwd=tmp_path, check=True, capture_output=True)
    config = yaml.safe_load((tmp_path / "x/lab.yaml").read_text())
    assert config["models"]["unet"]["depth"] == 4  # the GPU preset
