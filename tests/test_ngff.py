"""OME-Zarr images: pyramid levels, their values and physical placement, and validity."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from ome_zarr_models.v04 import Image, ImageLabel
from skimage.transform import downscale_local_mean

from unetflow import io, ngff
from unetflow.voxel_size import VoxelSize

EM = VoxelSize(50.0, 4.0, 4.0, "nanometer")


def filled_image(tmp_path, values: np.ndarray, downsampling: str = "local_mean", **options) -> zarr.Group:
    group = io.create_group(tmp_path / "image.zarr")
    ngff.create_image(group, values.shape, values.dtype, EM, name="test", downsampling=downsampling, **options)[:] = values
    ngff.write_pyramid(group)
    return zarr.open_group(str(tmp_path / "image.zarr"), mode="r")


def test_levels_halve_y_and_x_until_the_largest_edge_is_256_and_keep_z():
    assert ngff.level_shapes((3, 4096, 4096)) == [(3, 4096, 4096), (3, 2048, 2048), (3, 1024, 1024), (3, 512, 512),
                                                  (3, 256, 256)]
    assert ngff.level_shapes((2, 3, 600, 257)) == [(2, 3, 600, 257), (2, 3, 300, 128), (2, 3, 150, 64)]
    assert ngff.level_shapes((5, 256, 256)) == [(5, 256, 256)]
    assert ngff.level_shapes((1, 4000, 3)) == [(1, 4000, 3), (1, 2000, 1)]  # no level of width 0


def test_mean_levels_are_block_means_of_level_zero(tmp_path):
    values = np.random.default_rng(0).random((2, 1030, 600)).astype(np.float32)
    image = filled_image(tmp_path, values)
    assert [image[str(level)].shape for level in range(3)] == [(2, 1030, 600), (2, 515, 300), (2, 257, 150)]
    for level, block in ((1, 2), (2, 4)):
        rows, columns = image[str(level)].shape[1:]
        trimmed = values[:, :rows * block, :columns * block]
        np.testing.assert_allclose(image[str(level)][:], downscale_local_mean(trimmed, (1, block, block)), atol=1e-6)


def test_integer_mean_levels_round_and_keep_the_dtype(tmp_path):
    values = np.random.default_rng(1).integers(0, 256, (1, 600, 520), dtype=np.uint8)
    image = filled_image(tmp_path, values)
    assert image["1"].dtype == np.uint8
    np.testing.assert_array_equal(image["1"][:], np.round(downscale_local_mean(values, (1, 2, 2))).astype(np.uint8))


def test_nearest_levels_take_every_second_pixel_so_labels_stay_labels(tmp_path):
    labels = np.random.default_rng(2).integers(0, 1000, (2, 700, 520), dtype=np.uint32)
    image = filled_image(tmp_path, labels, downsampling="nearest")
    np.testing.assert_array_equal(image["1"][:], labels[:, ::2, ::2][:, :350, :260])
    np.testing.assert_array_equal(image["2"][:], labels[:, ::4, ::4][:, :175, :130])
    assert set(np.unique(image["2"][:])) <= set(np.unique(labels))


@pytest.mark.parametrize("downsampling", ["local_mean", "nearest"])
def test_each_level_sits_where_the_level_zero_pixels_it_stands_for_are(tmp_path, downsampling):
    """Physical centre of a level's pixel = mean centre of the level-0 pixels it is made from."""
    values = np.zeros((1, 1200, 1200), np.float32)
    multiscale = filled_image(tmp_path, values, downsampling).attrs["multiscales"][0]
    for level, dataset in enumerate(multiscale["datasets"]):
        transforms = {transform["type"]: transform[transform["type"]] for transform in dataset["coordinateTransformations"]}
        scale, shift = np.array(transforms["scale"]), np.array(transforms.get("translation", [0.0, 0.0, 0.0]))
        index, factor = np.array([0, 7, 11]), 2**level
        sources = [index[1] * factor + offset for offset in range(factor if downsampling == "local_mean" else 1)]
        expected_y = np.mean(sources) * EM.y
        assert shift[1] + index[1] * scale[1] == pytest.approx(expected_y)
        assert scale.tolist() == [EM.z, EM.y * factor, EM.x * factor]
    assert [axis.get("unit") for axis in multiscale["axes"]] == ["nanometer"] * 3
    assert multiscale["type"] == downsampling


def test_a_pyramid_of_some_slices_leaves_the_others_alone(tmp_path):
    """Parts of a split job each build the levels of their own slices."""
    group = io.create_group(tmp_path / "image.zarr")
    ngff.create_image(group, (3, 600, 600), np.float32, EM, name="test")[:] = 1.0
    ngff.write_pyramid(group, range(1, 2))
    assert group["1"][1].min() == 1.0 and group["1"][0].max() == group["1"][2].max() == 0.0


def test_images_with_channels_and_label_images_validate_against_ngff_0_4(tmp_path):
    group = io.create_group(tmp_path / "probabilities.zarr")
    ngff.create_image(group, (2, 2, 300, 300), "uint8", EM, name="probabilities",
                      channel_names=["background", "foreground"])
    model = Image.from_zarr(zarr.open_group(str(tmp_path / "probabilities.zarr"), mode="r"))
    assert [axis.name for axis in model.attributes.multiscales[0].axes] == ["c", "z", "y", "x"]
    assert [channel["label"] for channel in group.attrs["omero"]["channels"]] == ["background", "foreground"]

    image = io.create_group(tmp_path / "data.zarr")
    ngff.create_image(image, (2, 300, 300), "uint8", EM, name="raw")
    ngff.create_label(image, "classes", (2, 300, 300), np.dtype(np.uint8), EM, colors=ngff.class_colours(3))
    opened = zarr.open_group(str(tmp_path / "data.zarr"), mode="r")
    Image.from_zarr(opened)
    label = ImageLabel.from_zarr(opened["labels/classes"])
    assert label.attributes.image_label.source.image == "../../"
    assert [colour.label_value for colour in label.attributes.image_label.colors] == [0, 1, 2]


def test_the_voxel_size_reads_back(tmp_path):
    image = filled_image(tmp_path, np.zeros((1, 8, 8), np.uint8))
    assert ngff.voxel_size_of(image) == EM
    assert ngff.voxel_size_of(io.create_group(tmp_path / "bare.zarr")) == VoxelSize()
