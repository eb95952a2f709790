import numpy as np
import pytest
from scipy import ndimage
from unetflow.mirror import mirrored_window
from unetflow.transforms3d import (
    VolumeGeometry,
    elastic_displacement_3d,
    sample_volumes,
    transform_volumes,
    volume_source_coordinates,
)


class RecordingVolume:
    """A numpy volume that records the selections read from it."""

    def __init__(self, values):
        self.values, self.shape, self.reads = values, values.shape, []

    def __getitem__(self, selection):
        self.reads.append(selection)
        return self.values[selection]


def test_elastic_field_has_the_papers_scale_in_every_axis_and_is_smooth():
    corners, bends = [], []
    for seed in range(200):
        field = elastic_displacement_3d((33, 40, 48), np.random.default_rng(seed), grid=3, sigma=10)
        assert field.shape == (3, 33, 40, 48)
        corners.append(field[:, [0, 0, -1, -1], [0, -1, 0, -1], [0, -1, -1, 0]])  # on control points
        bends.append(max(np.abs(np.diff(field, n=2, axis=axis)).max() for axis in (1, 2, 3)))
    for component in np.stack(corners, axis=1):  # Gaussian control vectors, sigma 10 voxels, in z, y and x
        assert component.std() == pytest.approx(10.0, rel=0.15)
    assert max(bends) < 1.0  # tricubic: bends smoothly (noise of sigma 10 would bend by ~10 voxels)


def test_a_mirrored_3d_window_equals_reflect_padding():
    values = np.arange(5 * 7 * 9).reshape(5, 7, 9)
    volume = RecordingVolume(values)
    block = mirrored_window(volume, (-4, 8), (3, 10), (-10, 2))
    padded = np.pad(values, 12, mode="reflect")
    np.testing.assert_array_equal(block, padded[12 - 4 : 12 + 8, 12 + 3 : 12 + 10, 12 - 10 : 12 + 2])
    assert len(volume.reads) == 1 and all(isinstance(part, slice) for part in volume.reads[0])


def test_sampling_at_voxel_centres_without_warp_reproduces_the_volume():
    volume = np.random.default_rng(0).random((16, 30, 40)).astype(np.float32)
    geometry = VolumeGeometry(center=(8.0, 15.0, 20.0), rotation=1e-12)  # forces the interpolating path
    (tile,) = transform_volumes([volume], [3], geometry, (9, 21, 21))
    np.testing.assert_allclose(tile, volume[4:13, 5:26, 10:31], atol=1e-5)


def test_rotation_by_90_degrees_turns_every_plane_and_leaves_z_alone():
    volume = np.random.default_rng(1).random((6, 30, 30)).astype(np.float32)
    geometry = VolumeGeometry(center=(2.5, 14.5, 14.5), rotation=np.pi / 2)
    (nearest,) = sample_volumes([volume], [0], volume_source_coordinates(geometry, (6, 30, 30)))
    np.testing.assert_array_equal(nearest, np.rot90(volume, k=-1, axes=(1, 2)))


def test_flips_of_each_axis_without_warp_are_exact():
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    geometry = VolumeGeometry(center=(1.5, 2.0, 2.5), flips=(True, False, True))
    (tile,) = transform_volumes([volume], [3], geometry, (4, 5, 6))
    np.testing.assert_array_equal(tile, volume[::-1, :, ::-1])


@pytest.mark.parametrize("order", [0, 1, 3])
def test_sampling_equals_scipy_map_coordinates_with_mirroring(order):
    rng = np.random.default_rng(order)
    volume = rng.random((14, 50, 40)).astype(np.float32)
    shape = (10, 32, 32)
    geometry = VolumeGeometry(center=(2.0, 45.0, 5.5), rotation=0.7, flips=(True, False, False),
                              displacement=elastic_displacement_3d(shape, rng, grid=3, sigma=6))
    coordinates = volume_source_coordinates(geometry, shape)  # reaches past the volume's faces
    (ours,) = sample_volumes([volume], [order], coordinates)
    reference = ndimage.map_coordinates(volume.astype(np.float64), coordinates, order=order, mode="mirror")
    np.testing.assert_allclose(ours, reference, atol=1e-5)
