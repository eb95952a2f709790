import dask.array as da
import numpy as np
import pytest
from PIL import Image
from skimage.measure import label as connected_components

from unetflow.synthetic import generate_stack
from unetflow.steps.weights import (
    border_cutoff,
    class_weights,
    naive_weight_map,
    slice_class_weights,
    weight_map,
    weight_map_stack,
)

BALANCED = np.array([1.0, 1.0])


def touching_slices(count=2, size=160):
    _, _, instances = generate_stack(count, size, seed=5, mode="touching")
    objects = instances.astype(np.uint32)
    classes = (objects > 0).astype(np.uint8)
    return classes, objects


def test_equals_the_naive_reference_on_touching_cells():
    classes, objects = touching_slices()
    for index in range(2):
        weights = class_weights(np.bincount(classes[index].ravel()))
        ours = weight_map(classes[index], objects[index], class_weight=weights, w0=10, sigma=5)
        reference = naive_weight_map(classes[index], objects[index], class_weight=weights, w0=10, sigma=5)
        np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)


def test_equals_the_naive_reference_on_isbi_slices(isbi_dir):
    for index in (0, 11, 21):
        labels = np.asarray(Image.open(isbi_dir / "train" / "label" / f"{index:02d}.png"))
        classes = (labels == 255).astype(np.uint8)
        objects = connected_components(classes, connectivity=1).astype(np.uint32)
        weights = class_weights(np.bincount(classes.ravel()))
        ours = weight_map(classes, objects, class_weight=weights, w0=10, sigma=5)
        reference = naive_weight_map(classes, objects, class_weight=weights, w0=10, sigma=5)
        np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)


def test_middle_of_a_gap_between_two_squares_follows_the_formula():
    classes = np.zeros((30, 40), dtype=np.uint8)
    classes[10:20, 5:15] = 1  # square A: columns 5..14
    classes[10:20, 21:31] = 1  # square B: columns 21..30, gap 15..20
    objects = connected_components(classes, connectivity=1).astype(np.uint32)
    weights = weight_map(classes, objects, class_weight=np.array([0.5, 2.0]), w0=10, sigma=5)
    # pixel (15, 17): 3 px from A's column 14 and 4 px from B's column 21
    assert weights[15, 17] == pytest.approx(0.5 + 10 * np.exp(-((3 + 4) ** 2) / (2 * 5**2)), abs=1e-6)
    assert weights[15, 10] == pytest.approx(2.0)  # foreground: w_c only


@pytest.mark.parametrize("count", [0, 1, 40])
def test_finite_for_zero_one_or_many_objects(count):
    classes = np.zeros((64, 64), dtype=np.uint8)
    for index in range(count):
        row, col = divmod(index, 8)
        classes[row * 8 : row * 8 + 5, col * 8 : col * 8 + 5] = 1
    objects = connected_components(classes, connectivity=1).astype(np.uint32)
    weights = weight_map(classes, objects, class_weight=class_weights(np.bincount(classes.ravel(), minlength=2)),
                         w0=10, sigma=5)
    assert np.all(np.isfinite(weights))
    if count < 2:
        np.testing.assert_allclose(weights, class_weights(np.bincount(classes.ravel(), minlength=2))[classes])
    else:
        assert weights.max() > 5  # gaps between neighbours are up-weighted


def test_class_weights_average_to_one_and_balance_classes():
    counts = np.array([300, 100, 0, 600])
    weights = class_weights(counts)
    assert weights[2] == 0
    assert np.sum(counts * weights) == pytest.approx(counts.sum())
    totals = counts * weights
    np.testing.assert_allclose(totals[counts > 0], totals[0])


def test_per_slice_class_weights_differ_by_slice():
    classes = np.zeros((2, 10, 10), dtype=np.uint8)
    classes[0, :5] = 1
    classes[1, :2] = 1
    per_slice = slice_class_weights(da.from_array(classes, chunks=(1, 10, 10)), 2, per_slice=True)
    dataset = slice_class_weights(da.from_array(classes, chunks=(1, 10, 10)), 2, per_slice=False)
    np.testing.assert_allclose(per_slice[0], [1.0, 1.0])
    np.testing.assert_allclose(per_slice[1], class_weights(np.array([80, 20])))
    np.testing.assert_allclose(dataset[0], dataset[1])
    np.testing.assert_allclose(dataset[0], class_weights(np.array([130, 70])))


def test_tiled_equals_untiled():
    classes, objects = touching_slices(2, 200)
    weights = np.stack([class_weights(np.array([1, 1]))] * 2)
    whole = weight_map_stack(
        da.from_array(classes, chunks=(1, 200, 200)), da.from_array(objects, chunks=(1, 200, 200)),
        slice_weights=weights, w0=10, sigma=5,
    ).compute()
    tiled = weight_map_stack(
        da.from_array(classes, chunks=(1, 64, 48)), da.from_array(objects, chunks=(1, 64, 48)),
        slice_weights=weights, w0=10, sigma=5,
    ).compute(scheduler="threads")
    np.testing.assert_array_equal(tiled, whole)
    assert border_cutoff(10, 5) < 64 / 2  # the halo fits the tiles used here


def test_sigma_and_w0_shape_the_border_term():
    classes = np.zeros((20, 30), dtype=np.uint8)
    classes[:, :10] = classes[:, 16:] = 1
    objects = connected_components(classes, connectivity=1).astype(np.uint32)
    narrow = weight_map(classes, objects, class_weight=BALANCED, w0=10, sigma=2)
    wide = weight_map(classes, objects, class_weight=BALANCED, w0=10, sigma=8)
    double = weight_map(classes, objects, class_weight=BALANCED, w0=20, sigma=8)
    assert narrow[10, 12] < wide[10, 12]
    np.testing.assert_allclose(double[10, 10:16] - 1, 2 * (wide[10, 10:16] - 1), rtol=1e-6)
