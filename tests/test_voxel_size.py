"""Voxel sizes: from the config, from OME-TIFF, ImageJ TIFF and OME-Zarr metadata, into the stores."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.writer import write_image
from PIL import Image

from unetflow import io, ngff
from unetflow.errors import InputError
from unetflow.readers import open_stack
from unetflow.steps import ingest
from unetflow.voxel_size import VoxelSize, from_config, resolve

STACK = np.random.default_rng(0).integers(0, 256, (4, 32, 40), dtype=np.uint8)


def test_config_units_take_the_common_spellings():
    assert from_config({"z": 50, "y": 4, "x": 4, "unit": "nm"}, "here") == VoxelSize(50, 4, 4, "nanometer")
    assert from_config({"z": 1, "y": 0.5, "x": 0.5, "unit": "µm"}, "here").unit == "micrometer"
    assert from_config({"z": 1, "y": 1, "x": 1, "unit": "micron"}, "here").unit == "micrometer"
    assert from_config(None, "here") is None


@pytest.mark.parametrize("entry, message", [
    ({"z": 50, "y": 4, "x": 4, "unit": "nanometre-ish"}, r"here.unit: unknown length unit 'nanometre-ish'"),
    ({"z": 0, "y": 4, "x": 4, "unit": "nm"}, r"here.z: voxel size 0 is not a positive number"),
])
def test_bad_voxel_sizes_are_refused_naming_the_key(entry, message):
    with pytest.raises(InputError, match=message):
        from_config(entry, "here")


def test_ome_tiff_physical_sizes_are_read_in_one_unit(tmp_path):
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, STACK, photometric="minisblack", metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.004, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 4,
        "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.05, "PhysicalSizeZUnit": "µm"})
    found = open_stack(path).voxel_size
    assert found.unit == "micrometer"
    assert (found.z, found.y, found.x) == pytest.approx((0.05, 0.004, 0.004))


def test_imagej_tiff_resolution_and_spacing_are_read(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, STACK, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"spacing": 2.0, "unit": "micron", "axes": "ZYX"})
    assert open_stack(path).voxel_size == VoxelSize(2.0, 0.5, 0.25, "micrometer")


def test_a_folder_of_imagej_slices_takes_the_first_slices_metadata(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for index, plane in enumerate(STACK):
        tifffile.imwrite(folder / f"{index}.tif", plane, imagej=True, resolution=(10.0, 10.0),
                         metadata={"spacing": 0.3, "unit": "um"})
    assert open_stack(folder).voxel_size == VoxelSize(0.3, 0.1, 0.1, "micrometer")


def test_plain_tiffs_npy_and_pngs_state_no_voxel_size(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", STACK, photometric="minisblack")  # 72 dpi says nothing about a sample
    np.save(tmp_path / "stack.npy", STACK)
    (tmp_path / "pngs").mkdir()
    for index, plane in enumerate(STACK):
        Image.fromarray(plane).save(tmp_path / "pngs" / f"{index}.png", dpi=(300, 300))
    for source in ("plain.tif", "stack.npy", "pngs"):
        assert open_stack(tmp_path / source).voxel_size is None, source


def test_an_ome_zarr_written_by_ome_zarr_py_gives_its_scale(tmp_path):
    group = zarr.open_group(str(tmp_path / "image.zarr"), mode="w", zarr_format=2)
    write_image(STACK[None], group, axes="czyx", scale={"z": 0.2, "y": 0.1, "x": 0.1},
                axes_units={name: "micrometer" for name in "zyx"}, scale_factors=[2])
    assert open_stack(tmp_path / "image.zarr").voxel_size == VoxelSize(0.2, 0.1, 0.1, "micrometer")


def test_the_config_wins_over_the_file_and_says_so(caplog):
    configured, in_file = VoxelSize(50, 4, 4, "nanometer"), VoxelSize(1, 1, 1, "micrometer")
    with caplog.at_level(logging.WARNING):
        assert resolve(configured, in_file, "stack.tif") == (configured, "config")
    assert "overrides the file's 1 x 1 x 1 micrometer" in caplog.text
    assert resolve(None, in_file, "stack.tif") == (in_file, "file")
    with caplog.at_level(logging.WARNING):
        assert resolve(None, None, "stack.tif") == (VoxelSize(), "none")
    assert "Set the dataset's voxel_size" in caplog.text


def test_ingest_writes_the_files_voxel_size_into_image_and_labels(tmp_path):
    images = tmp_path / "images.ome.tif"
    tifffile.imwrite(images, STACK, photometric="minisblack", metadata={
        "axes": "ZYX", "PhysicalSizeX": 4, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 4, "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 50, "PhysicalSizeZUnit": "nm"})
    tifffile.imwrite(tmp_path / "labels.tif", (STACK > 128).astype(np.uint8), photometric="minisblack")
    ingest.main(["--images", str(images), "--labels", str(tmp_path / "labels.tif"), "--out", str(tmp_path / "data.zarr")])
    store = io.open_store(tmp_path / "data.zarr")
    expected = VoxelSize(50, 4, 4, "nanometer")
    assert ngff.voxel_size_of(store) == expected
    assert ngff.voxel_size_of(store["labels/objects"]) == ngff.voxel_size_of(store["labels/classes"]) == expected
    assert io.open_raw(store).attrs["unetflow"]["voxel_size"] == {**expected.as_config(), "source": "file"}


def test_a_4096_px_slice_is_stored_with_at_least_four_pyramid_levels(tmp_path):
    slice_ = np.random.default_rng(3).integers(0, 256, (1, 4096, 4096), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "large.tif", slice_, photometric="minisblack")
    ingest.main(["--images", str(tmp_path / "large.tif"), "--out", str(tmp_path / "data.zarr"),
                 "--voxel-size", '{"z": 50, "y": 4, "x": 4, "unit": "nanometer"}'])
    store = io.open_store(tmp_path / "data.zarr")
    levels = [dataset["path"] for dataset in store.attrs["multiscales"][0]["datasets"]]
    assert len(levels) >= 4
    assert [store[level].shape[1] for level in levels] == [4096, 2048, 1024, 512, 256]
    assert store[levels[-1]].chunks == (1, 256, 256) and store["0"].chunks == (1, 1024, 1024)
    expected = np.round(slice_[0].reshape(256, 16, 256, 16).mean(axis=(1, 3)))
    assert np.abs(store[levels[-1]][0].astype(int) - expected).max() <= 1  # means of means, rounded per level
