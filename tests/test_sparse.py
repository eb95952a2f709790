"""Sparse annotations: unknown pixels (ignore_label, labelled_slices) teach and score nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
import zarr

from conftest import copy_workflow, on_demo, planned_jobs, snakemake
from unetflow import io
from unetflow.annotations import Annotation
from unetflow.augmentation import AugmentSettings, OnlineSamples
from unetflow.errors import InputError
from unetflow.evaluation import SliceCounts
from unetflow.methods.losses import weighted_cross_entropy
from unetflow.methods.metrics import pixel_error_of
from unetflow.readers import open_stack
from unetflow import weight_maps
from unetflow.label_targets import targets_from_labels
from unetflow.steps.ingest import ingest
from unetflow.synthetic import generate_stack

IGNORE_VALUE = 65535


def sparse_labels(instances: np.ndarray, keep: float, seed: int = 0) -> np.ndarray:
    """Instance labels with only a fraction `keep` of the objects annotated, each with its one-pixel
    surround of background; every other pixel painted IGNORE_VALUE (how a lab annotates a few cells)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    labels = np.full(instances.shape, IGNORE_VALUE, np.uint16)
    ids = np.unique(instances[instances > 0])
    kept = rng.choice(ids, max(1, round(keep * ids.size)), replace=False)
    chosen = np.isin(instances, kept)
    surround = ndimage.binary_dilation(chosen, iterations=2) & ~chosen
    labels[surround & (instances == 0)] = 0
    labels[chosen] = instances[chosen]
    return labels


def test_the_loss_gradient_is_exactly_zero_where_the_class_is_unknown():
    _, _, instances = generate_stack(1, 96, seed=0)
    labels = sparse_labels(instances[0], keep=0.1)
    objects, classes = targets_from_labels(labels, "instance", 1, labels == IGNORE_VALUE)
    unknown = classes == io.IGNORE
    assert 0.85 <= unknown.mean() <= 0.97  # about 90 % of the pixels unknown
    class_weight = weight_maps.class_weights(np.bincount(classes[~unknown], minlength=2))
    weight = weight_maps.weight_map(classes, objects, class_weight=class_weight, w0=10, sigma=5)
    assert np.all(weight[unknown] == 0) and np.all(weight[~unknown] > 0)

    logits = torch.randn(1, 2, *classes.shape, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.from_numpy(classes[None]), torch.from_numpy(weight[None]))
    loss.backward()
    gradient = logits.grad[0].abs().sum(dim=0).numpy()
    assert np.all(gradient[unknown] == 0.0) and np.count_nonzero(gradient[~unknown]) == np.count_nonzero(~unknown)


def test_no_border_term_against_objects_in_unknown_pixels():
    """Two squares with a 3-px gap: fully labelled the gap gets the border term; with the second
    square unknown the gap is plain background (w_c alone) and the square weighs 0."""
    objects = np.zeros((40, 40), np.uint32)
    objects[10:30, 5:18], objects[10:30, 21:34] = 1, 2
    classes = (objects > 0).astype(np.uint8)
    class_weight = np.array([1.0, 1.0])
    full = weight_maps.weight_map(classes, objects, class_weight=class_weight, w0=10, sigma=5)
    assert full[20, 19] > 5
    unknown = objects == 2
    partial_classes, partial_objects = np.where(unknown, io.IGNORE, classes), np.where(unknown, 0, objects)
    partial = weight_maps.weight_map(partial_classes.astype(np.uint8), partial_objects.astype(np.uint32),
                                      class_weight=class_weight, w0=10, sigma=5)
    assert partial[20, 19] == pytest.approx(1.0) and np.all(partial[unknown] == 0)
    np.testing.assert_array_equal(partial, weight_maps.naive_weight_map(
        partial_classes.astype(np.uint8), partial_objects.astype(np.uint32), class_weight=class_weight, w0=10, sigma=5))


def test_evaluation_skips_unknown_pixels():
    classes = np.zeros((1, 8, 8), np.uint8)
    classes[0, 2:6, 2:6] = 1
    foreground = (classes > 0).astype(np.float32)
    wrong = foreground.copy()
    wrong[0, :, 6:] = 1.0  # false positives ...
    sparse = classes.copy()
    sparse[0, :, 6:] = io.IGNORE  # ... where nothing is known
    truth = classes.astype(np.uint32)
    counts = SliceCounts()
    counts.add(wrong, sparse, np.where(sparse == io.IGNORE, 0, truth), truth, 0.5)
    assert pixel_error_of(counts.at_threshold) == 0.0 and counts.at_threshold.total == 48
    dense = SliceCounts()
    dense.add(wrong, classes, truth, truth, 0.5)
    assert pixel_error_of(dense.at_threshold) == pytest.approx(16 / 64)


def run_ingest(tmp_path: Path, labels: np.ndarray, dims: int = 2, **annotation) -> zarr.Group:
    images = np.random.default_rng(0).integers(0, 256, labels.shape, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "images.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    ingest(open_stack(tmp_path / "images.tif"), open_stack(tmp_path / "labels.tif"), tmp_path / "data.zarr",
           label_kind="auto", num_classes=2, dims=dims, annotation=Annotation(**annotation))
    return zarr.open_group(str(tmp_path / "data.zarr"), mode="r")


@pytest.mark.parametrize("dims", [2, 3])
def test_ingest_marks_ignored_pixels_and_unlabelled_slices_unknown(tmp_path, dims):
    labels = np.zeros((4, 24, 24), np.uint16)
    labels[:, 4:10, 4:10] = 7
    labels[:, 12:20, 12:20] = IGNORE_VALUE
    store = run_ingest(tmp_path, labels, dims, ignore_label=IGNORE_VALUE, labelled=frozenset({0, 2}))
    classes, objects = store["labels/classes/0"][:], store["labels/objects/0"][:]
    assert store["0"].attrs["unetflow"]["labels"]["kind"] == "binary"  # 0 and 7: the ignore value is no label
    assert np.all(classes[[1, 3]] == io.IGNORE) and np.all(objects[[1, 3]] == 0)
    assert np.all(classes[0, 12:20, 12:20] == io.IGNORE) and np.all(objects[0, 12:20, 12:20] == 0)
    assert np.all(classes[0, 4:10, 4:10] == 1) and classes[0, 0, 0] == 0
    assert store["0"].attrs["unetflow"]["labels"]["labelled_slices"] == [0, 2]


def test_a_large_label_volume_marks_unknown_voxels_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "VOLUME_CHUNK_EDGE", 8)  # several chunks: the blockwise path
    labels = np.zeros((16, 20, 20), np.uint16)
    labels[:, 2:14, 2:6] = 3
    labels[:, 2:14, 6:10] = 4  # touching: a border between them
    labels[:, 15:, :] = IGNORE_VALUE
    store = run_ingest(tmp_path, labels, 3, ignore_label=IGNORE_VALUE)
    classes, objects = store["labels/classes/0"][:], store["labels/objects/0"][:]
    expected_objects, expected_classes = targets_from_labels(labels, "instance", 4, labels == IGNORE_VALUE)
    np.testing.assert_array_equal(classes, expected_classes)
    np.testing.assert_array_equal(objects, expected_objects)
    assert np.all(classes[:, 15:] == io.IGNORE)


def test_an_ignore_label_that_means_background_is_refused(tmp_path):
    labels = np.zeros((2, 16, 16), np.uint16)
    labels[:, 3:8, 3:8] = 5
    labels[:, 10:14, 10:14] = 9
    labels[:, 10:14, 2:6] = 11
    with pytest.raises(InputError, match="ignore_label is 0, which is the background of instance labels"):
        run_ingest(tmp_path, labels, ignore_label=0)


def test_training_tiles_always_hold_known_labels(tmp_path):
    """A stack of which one slice of eight is annotated: every sample comes from it."""
    labels = np.full((8, 64, 64), IGNORE_VALUE, np.uint16)
    labels[5] = 0
    labels[5, 20:40, 20:40] = 1
    store = run_ingest(tmp_path, labels, ignore_label=IGNORE_VALUE)
    classes = store["labels/classes/0"]
    weights = weight_maps.weight_map_stack(
        zarr_dask(classes), zarr_dask(store["labels/objects/0"]),
        slice_weights=weight_maps.slice_class_weights(zarr_dask(classes), 2, per_slice=False), w0=10, sigma=5)
    group = io.create_group(tmp_path / "weights.zarr")
    group.create_array(io.LEVEL0, shape=classes.shape, dtype=np.float32, chunks=(1, 64, 64),
                       config=io.ARRAY_CONFIG)[:] = weights.compute()
    samples = OnlineSamples([tmp_path / "data.zarr"], [tmp_path / "weights.zarr"],
                            settings=AugmentSettings.from_config({}), input_size=40, output_size=24, seed=0, length=20)
    for index in range(20):
        _, label_tile, weight_tile = samples[index]
        assert io.known(label_tile).any() and np.all(weight_tile[label_tile == io.IGNORE] == 0)


def zarr_dask(array):
    import dask.array as da

    return da.from_zarr(array)


@pytest.mark.slow
def test_a_sparsely_annotated_stack_trains_tunes_and_is_evaluated(tmp_path):
    """Through the workflow: 10 % of the objects annotated on half the training slices."""
    run = copy_workflow(tmp_path / "run")
    images, _, instances = generate_stack(6, 128, seed=4)
    sparse = np.stack([sparse_labels(plane, keep=0.3, seed=index) for index, plane in enumerate(instances)])
    tifffile.imwrite(run / "images.tif", images, photometric="minisblack")
    tifffile.imwrite(run / "labels.tif", sparse, photometric="minisblack")
    tifffile.imwrite(run / "truth.tif", instances, photometric="minisblack")
    config = {"datasets": {
        "sparse": {"images": "images.tif", "labels": "labels.tif", "slices": "0-3", "ignore_label": IGNORE_VALUE,
                   "labelled_slices": "0,2,3"},
        "held_out": {"images": "images.tif", "labels": "labels.tif", "slices": "4", "ignore_label": IGNORE_VALUE},
        "scored": {"images": "images.tif", "labels": "truth.tif", "slices": "5"}},
        "train_on": ["sparse"], "validate_on": ["held_out"], "predict_on": ["scored"],
        "augment": {"samples": 16}, "train": {"iterations": 6, "batch_size": 2, "validate_every": 3}}
    (run / "sparse.yaml").write_text(yaml.safe_dump(config))
    options = on_demo(run / "sparse.yaml")
    assert planned_jobs(run, *options)["train"] == 1
    snakemake(run, "--cores", "2", *options)
    data = zarr.open_group(str(run / "results/sparse/data.zarr"), mode="r")
    assert np.all(data["labels/classes/0"][1] == io.IGNORE)  # slice 1 of the stack: not annotated
    weights = zarr.open_group(str(run / "results/sparse/weights.zarr"), mode="r")["0"][:]
    assert np.all(weights[data["labels/classes/0"][:] == io.IGNORE] == 0)
    assert Counter(zarr.open_group(str(run / "results/sparse/augmented/188-100.zarr"), mode="r")["labels"][:]
                   .ravel().tolist())[io.IGNORE] > 0  # unknown pixels reach the samples, weighing 0
    assert (run / "results/evaluation/small/scored.csv").exists()
