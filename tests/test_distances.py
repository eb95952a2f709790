import numpy as np
import pytest

from unetflow.distances import naive_nearest_two_distances, nearest_two_distances
from unetflow.synthetic import generate_stack

VOLUME = (12, 20, 24)


def random_objects(seed: int, shape=(60, 80), count=12, max_extent=12) -> np.ndarray:
    """``count`` labelled boxes at random places in a 2-D or 3-D array, some overlapping."""
    rng = np.random.default_rng(seed)
    objects = np.zeros(shape, dtype=np.uint32)
    for label in range(1, count + 1):
        corner = [rng.integers(0, length) for length in shape]
        extent = rng.integers(1, max_extent, size=len(shape))
        objects[tuple(slice(start, start + size) for start, size in zip(corner, extent))] = label
    return objects


@pytest.mark.parametrize("seed", range(5))
def test_equals_one_transform_per_object(seed):
    objects = random_objects(seed)
    d1, d2 = nearest_two_distances(objects, max_distance=1e6)
    reference_d1, reference_d2 = naive_nearest_two_distances(objects)
    np.testing.assert_allclose(d1, reference_d1, atol=1e-9)
    np.testing.assert_allclose(d2, reference_d2, atol=1e-9)


@pytest.mark.parametrize("shape, spacing", [
    ((60, 80), (1.0, 2.5)),
    (VOLUME, None),
    (VOLUME, (2.5, 1.0, 1.0)),
    (VOLUME, (2.5, 1.3, 0.7)),
])
@pytest.mark.parametrize("seed", range(3))
def test_with_spacing_and_in_3d_equals_one_transform_per_object(seed, shape, spacing):
    objects = random_objects(seed, shape, count=10, max_extent=6)
    d1, d2 = nearest_two_distances(objects, max_distance=1e6, spacing=spacing)
    reference_d1, reference_d2 = naive_nearest_two_distances(objects, spacing)
    np.testing.assert_allclose(d1, reference_d1, atol=1e-9, rtol=0)
    np.testing.assert_allclose(d2, reference_d2, atol=1e-9, rtol=0)


def test_distances_beyond_the_cutoff_are_infinite_and_those_within_exact():
    objects = generate_stack(1, 128, seed=0, mode="touching")[2][0].astype(np.uint32)
    d1, d2 = nearest_two_distances(objects, max_distance=12.5)
    reference_d1, reference_d2 = naive_nearest_two_distances(objects)
    within = reference_d2 <= 12.5
    np.testing.assert_allclose(d2[within], reference_d2[within], atol=1e-9)
    np.testing.assert_allclose(d1[within], reference_d1[within], atol=1e-9)
    assert np.all(np.isinf(d2[~within]))


@pytest.mark.parametrize("spacing", [None, (2.5, 1.0, 1.0)])
def test_volume_is_exact_within_the_cutoff_and_mask_and_infinite_elsewhere(spacing):
    objects = random_objects(7, (16, 24, 24), count=14, max_extent=6)
    mask = objects == 0
    cutoff = 4.3  # no voxel lies at exactly this distance with these spacings
    distances = nearest_two_distances(objects, max_distance=cutoff, mask=mask, spacing=spacing)
    for ours, reference in zip(distances, naive_nearest_two_distances(objects, spacing)):
        within = mask & (reference <= cutoff)
        assert within.any() and (mask & ~within).any()  # both sides of the cut-off are tested
        np.testing.assert_allclose(ours[within], reference[within], atol=1e-9, rtol=0)
        assert np.all(np.isinf(ours[~within]))


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


def test_volume_distances_scale_each_axis_by_its_spacing():
    objects = np.zeros((6, 7, 8), dtype=np.uint32)
    objects[4, 5, 6] = 1
    objects[4, 5, 0] = 2
    d1, d2 = nearest_two_distances(objects, max_distance=100, spacing=(2.5, 1.5, 1.0))
    assert d1[0, 0, 0] == pytest.approx(np.sqrt((4 * 2.5) ** 2 + (5 * 1.5) ** 2))  # object 2
    assert d2[0, 0, 0] == pytest.approx(np.sqrt((4 * 2.5) ** 2 + (5 * 1.5) ** 2 + 6**2))  # object 1
    assert d1[4, 5, 3] == d2[4, 5, 3] == pytest.approx(3.0)  # half way between them


def test_spacing_must_give_one_positive_number_per_axis():
    objects = np.zeros((4, 5, 6), dtype=np.uint32)
    with pytest.raises(ValueError, match="spacing must be 3 positive numbers"):
        nearest_two_distances(objects, max_distance=10, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be 3 positive numbers"):
        nearest_two_distances(objects, max_distance=10, spacing=(0.0, 1.0, 1.0))
