import numpy as np
import pytest

from unetflow.mirror import mirror_indices
from unetflow.transforms import (
    Geometry,
    adjust_gray_values,
    cubic_weights,
    elastic_displacement,
    sample_planes,
    source_coordinates,
    transform_planes,
)


def test_mirror_indices_match_numpy_reflect_padding():
    plane = np.arange(7)
    padded = np.pad(plane, 15, mode="reflect")
    np.testing.assert_array_equal(plane[mirror_indices(-15, 22, 7)], padded)


def test_cubic_weights_interpolate_the_control_points():
    weights = cubic_weights(101, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(weights[[0, 50, 100]], np.eye(3), atol=1e-12)


def test_elastic_field_has_the_papers_scale_and_is_smooth():
    fields = np.stack([elastic_displacement(64, np.random.default_rng(seed), grid=3, sigma=10) for seed in range(200)])
    corners = fields[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.std() == pytest.approx(10.0, rel=0.1)  # control vectors: Gaussian, sigma 10 px
    assert np.abs(np.diff(fields, axis=2)).max() < 3.0  # bicubic: no jumps between neighbours


def test_sampling_at_pixel_centres_without_warp_reproduces_the_plane():
    plane = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    geometry = Geometry(center=(20.0, 25.0), rotation=1e-12)  # forces the interpolating path
    (tile,) = transform_planes([plane], [3], geometry, 21)
    np.testing.assert_allclose(tile, plane[10:31, 15:36], atol=1e-5)


def test_rotation_by_90_degrees_equals_rot90():
    plane = np.random.default_rng(1).random((30, 30)).astype(np.float32)
    geometry = Geometry(center=(14.5, 14.5), rotation=np.pi / 2)
    (nearest,) = sample_planes([plane], [0], source_coordinates(geometry, 30))
    np.testing.assert_array_equal(nearest, np.rot90(plane, k=-1))


def test_flips_without_warp_are_exact():
    plane = np.arange(100, dtype=np.float32).reshape(10, 10)
    geometry = Geometry(center=(4.5, 4.5), flip_rows=True)
    (tile,) = transform_planes([plane], [3], geometry, 10)
    np.testing.assert_array_equal(tile, plane[::-1])


def test_zero_gray_magnitudes_leave_the_image_unchanged():
    image = np.random.default_rng(2).normal(size=(16, 16)).astype(np.float32)
    out = adjust_gray_values(image, np.random.default_rng(0), brightness=0, contrast=0, gamma=0)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_sampling_equals_scipy_map_coordinates_with_mirroring(order):
    from scipy import ndimage

    rng = np.random.default_rng(order)
    plane = rng.random((90, 70)).astype(np.float32)
    geometry = Geometry(center=(30.0, 60.0), rotation=0.7, displacement=elastic_displacement(64, rng, grid=3, sigma=10))
    coordinates = source_coordinates(geometry, 64)  # reaches past the plane's edges
    (ours,) = sample_planes([plane], [order], coordinates)
    reference = ndimage.map_coordinates(plane.astype(np.float64), coordinates, order=order, mode="mirror")
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_spline_prefilter_equals_scipy():
    from scipy import ndimage

    from unetflow.transforms import _spline_prefilter

    values = np.random.default_rng(3).random((40, 57))
    np.testing.assert_allclose(_spline_prefilter(values), ndimage.spline_filter(values, 3, mode="mirror"), atol=1e-9)
