"""Sparse objects on a background (nuclei): the masked watershed leaves the background, the
detection scores (average precision and F1 at IoU 0.5) see what adapted Rand error cannot,
and tuning by them chooses the mask."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from skimage.draw import disk
from skimage.metrics import adapted_rand_error

from unetflow import io, ngff, settings
from unetflow.config_checks import check_watershed
from unetflow.errors import InputError
from unetflow.methods.metrics import object_scores
from unetflow.methods.segmenters import segment
from unetflow.tuning import candidates, choose, sweep

WATERSHED = {"method": "watershed", "threshold": 0.5, "seeds": "distance", "h": 2.0, "min_size": 0}


def sparse_nuclei(rng: np.random.Generator, shape=(128, 128), count: int = 6, radius: int = 8) -> np.ndarray:
    """Separate disks (nuclei) on a background that covers most of the image."""
    truth = np.zeros(shape, np.uint32)
    placed = 0
    while placed < count:
        centre = rng.integers(radius + 2, np.array(shape) - radius - 2)
        rows, columns = disk(tuple(centre), radius, shape=shape)
        if truth[max(centre[0] - 2 * radius - 2, 0):centre[0] + 2 * radius + 3,
                 max(centre[1] - 2 * radius - 2, 0):centre[1] + 2 * radius + 3].any():
            continue  # keep nuclei a diameter apart: background between them
        placed += 1
        truth[rows, columns] = placed
    return truth


def probability_of(truth: np.ndarray) -> np.ndarray:
    """A network-like foreground probability: the nuclei, blurred."""
    return ndimage.gaussian_filter((truth > 0).astype(np.float64), 1.0).astype(np.float32)


def matched_reference(truth: np.ndarray, objects: np.ndarray) -> int:
    """Matches at IoU > 0.5 from the full IoU matrix and an optimal assignment (StarDist's way)."""
    true_ids, found_ids = np.unique(truth[truth > 0]), np.unique(objects[objects > 0])
    iou = np.zeros((len(true_ids), len(found_ids)))
    for i, true_id in enumerate(true_ids):
        for j, found_id in enumerate(found_ids):
            a, b = truth == true_id, objects == found_id
            iou[i, j] = (a & b).sum() / (a | b).sum()
    rows, columns = linear_sum_assignment(-iou)
    return int((iou[rows, columns] > 0.5).sum())


@pytest.mark.parametrize("seed, shift", [(0, (0, 0)), (1, (1, 2)), (2, (2, -2)), (3, (3, 0))])
def test_detection_scores_equal_an_optimal_assignment_of_the_iou_matrix(seed, shift):
    rng = np.random.default_rng(seed)
    truth = sparse_nuclei(rng, count=5)
    objects = ndimage.shift(truth, shift, order=0)
    objects[rng.random(truth.shape) < 0.02] = 0
    objects[truth == rng.integers(1, 6)] = 0  # one nucleus missed
    objects[100:110, 0:10] = 77  # one false object
    matched = matched_reference(truth, objects)
    true_count, found_count = len(np.unique(truth)) - 1, len(np.unique(objects)) - 1
    scores = object_scores(truth, objects)
    assert scores["average_precision"] == pytest.approx(matched / (true_count + found_count - matched))
    assert scores["f1"] == pytest.approx(2 * matched / (true_count + found_count))
    assert 0 < matched < true_count  # the case is not trivial


def test_the_unmasked_watershed_floods_the_background_and_only_detection_sees_it():
    truth = sparse_nuclei(np.random.default_rng(0))
    flooded = segment(probability_of(truth), "watershed", {**WATERSHED, "mask": 0.0})
    assert (flooded > 0).all()  # every background pixel went to a nucleus
    scores = object_scores(truth, flooded)
    assert scores["adapted_rand_error"] == pytest.approx(0.0)  # blind: the true background is left out
    assert scores["average_precision"] == 0.0  # each object is mostly background: IoU < 0.5


def test_the_masked_watershed_leaves_the_background_and_finds_every_nucleus():
    truth = sparse_nuclei(np.random.default_rng(1))
    objects = segment(probability_of(truth), "watershed", {**WATERSHED, "mask": 0.5})
    assert (objects[truth == 0] > 0).mean() < 0.01  # at most the nuclei's blurred rims
    assert not objects[ndimage.binary_dilation(truth > 0, iterations=2) == 0].any()  # no background object
    scores = object_scores(truth, objects)
    assert scores["average_precision"] == 1.0 and scores["f1"] == 1.0
    assert adapted_rand_error(truth, objects)[0] < 0.01


def test_a_masked_watershed_of_touching_nuclei_still_splits_them():
    truth = np.zeros((64, 96), np.uint32)
    for number, centre in enumerate(((32, 30), (32, 52)), start=1):
        truth[disk(centre, 12, shape=truth.shape)] = number  # overlapping disks: they touch
    objects = segment(probability_of(truth), "watershed", {**WATERSHED, "mask": 0.3})
    assert len(np.unique(objects)) == 3 and object_scores(truth, objects)["average_precision"] == 1.0


def test_a_mask_above_the_threshold_is_refused_naming_both():
    with pytest.raises(InputError, match=r"tune.grid\[1\].mask is 0.6 with tune.grid\[1\].threshold 0.4"):
        check_watershed({"seeds": "distance", "h": 2, "threshold": 0.4, "mask": 0.6}, "tune.grid[1]")
    with pytest.raises(InputError, match="segment.mask"):
        segment(np.zeros((8, 8)), "watershed", {**WATERSHED, "mask": 0.7})


def test_unknown_pixels_count_in_no_detection_score():
    truth = sparse_nuclei(np.random.default_rng(2), count=3)
    objects = truth.copy()
    objects[:20, :20] = 99  # an object where nothing is known
    known = np.ones(truth.shape, bool)
    known[:20, :20] = False
    assert object_scores(truth, objects)["average_precision"] < 1.0
    assert object_scores(truth, objects, known)["average_precision"] == 1.0


def write_nuclei_stores(folder) -> tuple:
    rng = np.random.default_rng(3)
    truth = np.stack([sparse_nuclei(rng) for _ in range(2)])
    probability = np.clip(probability_of(truth) + rng.normal(0, 0.05, truth.shape), 0, 1).astype(np.float32)
    data = io.create_group(folder / "data.zarr")
    ngff.create_image(data, truth.shape, np.dtype(np.uint8), name="raw")[:] = 0
    ngff.create_label(data, "objects", truth.shape, np.dtype(np.uint32))[:] = truth
    ngff.create_label(data, "classes", truth.shape, np.dtype(np.uint8))[:] = truth > 0
    predictions = io.create_group(folder / "predictions.zarr")
    ngff.create_image(predictions, (2, *truth.shape), "float32", name="probabilities",
                      channel_names=["background", "foreground"])[:] = np.stack([1 - probability, probability])
    return folder / "data.zarr", folder / "predictions.zarr"


@pytest.mark.parametrize("metric", ["average_precision", "f1"])
def test_tuning_by_detection_on_sparse_nuclei_chooses_a_mask_that_leaves_the_background(tmp_path, metric):
    data, predictions = write_nuclei_stores(tmp_path)
    grid = [{"method": ["watershed"], "seeds": ["distance"], "threshold": [0.5], "h": [2.0], "mask": [0, 0.3, 0.5]}]
    trials = candidates(grid, settings.section("segment"))
    table = sweep([data], [predictions], trials, metric=metric)
    chosen = table.iloc[choose(table, 0.001)]
    assert chosen["mask"] > 0 and chosen[metric] == 1.0
    flooded = table[table["mask"] == 0].iloc[0]
    assert flooded["adapted_rand_error"] < 0.01 and flooded[metric] == 0.0  # what adapted Rand error misses
