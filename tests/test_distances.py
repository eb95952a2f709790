import numpy as np
import pytest

from unetflow.distances import naive_nearest_two_distances, nearest_two_distances
from unetflow.synthetic import generate_stack


def random_objects(seed: int, shape=(60, 80), count=12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    objects = np.zeros(shape, dtype=np.uint32)
    for label in range(1, count + 1):
        row, col = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        height, width = rng.integers(1, 12, size=2)
        objects[row : row + height, col : col + width] = label
    return objects


@pytest.mark.parametrize("seed", range(5))
def test_equals_one_transform_per_object(seed):
    objects = random_objects(seed)
    d1, d2 = nearest_two_distances(objects, max_distance=1e6)
    reference_d1, reference_d2 = naive_nearest_two_distances(objects)
    np.testing.assert_allclose(d1, reference_d1, atol=1e-9)
    np.testing.assert_allclose(d2, reference_d2, atol=1e-9)


def test_distances_beyond_the_cutoff_are_infinite_and_those_within_exact():
    objects = generate_stack(1, 128, seed=0, mode="touching")[2][0].astype(np.uint32)
    d1, d2 = nearest_two_distances(objects, max_distance=12.5)
    reference_d1, reference_d2 = naive_nearest_two_distances(objects)
    within = reference_d2 <= 12.5
    np.testing.assert_allclose(d2[within], reference_d2[within], atol=1e-9)
    np.testing.assert_allclose(d1[within], reference_d1[within], atol=1e-9)
    assert np.all(np.isinf(d2[~within]))


def test_mask_limits_the_pixels_computed():
    objects = random_objects(1)
    mask = objects == 0
    d1, _ = nearest_two_distances(objects, max_distance=1e6, mask=mask)
    assert np.all(np.isinf(d1[~mask]))
    np.testing.assert_allclose(d1[mask], naive_nearest_two_distances(objects)[0][mask])


def test_one_object_has_no_second_distance():
    objects = np.zeros((20, 20), dtype=np.uint32)
    objects[5:8, 5:8] = 3
    d1, d2 = nearest_two_distances(objects, max_distance=100)
    assert d1[0, 0] == pytest.approx(np.hypot(5, 5))
    assert np.all(np.isinf(d2))
