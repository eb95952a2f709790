"""Outputs for viewers: the view store and the stores open in napari (napari-ome-zarr) with their
layers, physical scale and values; they validate as NGFF 0.4; the OME-TIFF export round-trips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from napari.components import ViewerModel
from npe2 import PluginManager
from ome_zarr_models.v04 import Image, ImageLabel

from unetflow import io, ngff
from unetflow.readers import open_stack
from unetflow.steps import ingest, segment, tiff, view
from unetflow.voxel_size import VoxelSize

EM = {"z": 50, "y": 4, "x": 4, "unit": "nanometer"}
SHAPE = (3, 600, 520)  # large enough for a pyramid of 3 levels


def cells() -> np.ndarray:
    """Two rectangular cells per slice, on background."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[:, 100:300, 100:300] = 255
    labels[:, 350:500, 50:450] = 255
    return labels


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """A labelled dataset, probabilities of it, their segmentation and the view of both."""
    folder = tmp_path_factory.mktemp("view")
    raw = np.random.default_rng(0).integers(20, 201, SHAPE, dtype=np.uint8)  # shown 20-200, not 0-255
    tifffile.imwrite(folder / "images.tif", raw, photometric="minisblack")
    tifffile.imwrite(folder / "labels.tif", cells(), photometric="minisblack")
    ingest.main(["--images", str(folder / "images.tif"), "--labels", str(folder / "labels.tif"),
                 "--out", str(folder / "data.zarr"), "--voxel-size", json.dumps(EM)])
    predictions = io.create_group(folder / "predictions.zarr")
    foreground = np.where(cells() > 0, 0.95, 0.05).astype(np.float32)
    ngff.create_image(predictions, (2, *SHAPE), "float32", VoxelSize(**EM), name="probabilities",
                      channel_names=["background", "foreground"])[:] = np.stack([1 - foreground, foreground])
    ngff.write_pyramid(predictions)
    segment.main([str(folder / "predictions.zarr"), str(folder / "segmentation.zarr"),
                  "--settings", '{"settings": "fixed", "method": "components"}'])
    view.main([str(folder / "data.zarr"), str(folder / "segmentation.zarr"), str(folder / "view.ome.zarr"),
               "--name", "demo (small)"])
    return {name: folder / f"{name}.zarr" for name in ("data", "predictions", "segmentation")} | {
        "view": folder / "view.ome.zarr", "folder": folder}


def open_in_napari(path: Path) -> ViewerModel:
    PluginManager.instance().discover()  # napari-ome-zarr, as napari finds it at start-up
    viewer = ViewerModel()
    viewer.open(str(path), plugin="napari-ome-zarr")
    return viewer


def test_napari_opens_the_view_as_the_image_with_segmentation_and_ground_truth_labels(stores):
    layers = open_in_napari(stores["view"]).layers
    assert [(type(layer).__name__, layer.name) for layer in layers] == [
        ("Image", "demo (small): raw"), ("Labels", "labels/labels/segmentation"), ("Labels", "labels/labels/ground_truth")]
    for layer in layers:
        assert layer.scale.tolist() == [50.0, 4.0, 4.0]
        assert [str(unit) for unit in layer.units] == ["nanometer"] * 3
        assert layer.multiscale and [level.shape for level in layer.data] == [(3, 600, 520), (3, 300, 260),
                                                                              (3, 150, 130)]
    image, segmentation, truth = layers
    raw = tifffile.imread(stores["folder"] / "images.tif")
    assert image.colormap.name == "gray" and tuple(image.contrast_limits) == (raw.min(), raw.max())
    np.testing.assert_array_equal(np.asarray(image.data[0]), raw)
    objects = np.asarray(segmentation.data[0])
    np.testing.assert_array_equal(objects, io.open_objects(stores["segmentation"])[:])
    assert [len(np.unique(objects[z])) for z in range(3)] == [3, 3, 3]  # background and the two cells
    assert set(np.unique(np.asarray(truth.data[0]))) == {0, 1, 2}
    np.testing.assert_array_equal(objects > 0, np.asarray(truth.data[0]) > 0)


def test_napari_opens_the_probabilities_as_one_named_image_per_class(stores):
    layers = open_in_napari(stores["predictions"]).layers
    assert [layer.name for layer in layers] == ["probabilities: background", "probabilities: foreground"]
    assert [layer.visible for layer in layers] == [False, True]
    assert all(layer.scale.tolist() == [50.0, 4.0, 4.0] for layer in layers)
    assert np.asarray(layers[1].data[0])[0, 200, 200] == pytest.approx(0.95)


def test_every_store_validates_as_ngff_0_4(stores):
    for name in ("data", "predictions", "view"):
        Image.from_zarr(zarr.open_group(str(stores[name]), mode="r"))
    for label in ("labels/objects", "labels/classes"):
        ImageLabel.from_zarr(zarr.open_group(str(stores["data"]), mode="r")[label])
    view_labels = zarr.open_group(str(stores["view"]), mode="r")["labels"]
    assert view_labels.attrs["labels"] == ["segmentation", "ground_truth"]
    for label in view_labels.attrs["labels"]:
        ImageLabel.from_zarr(view_labels[label])
    ImageLabel.from_zarr(zarr.open_group(str(stores["segmentation"]), mode="r"))


def test_the_view_links_the_stores_relatively_and_copies_where_links_fail(stores, tmp_path, monkeypatch):
    assert os.readlink(stores["view"] / "0") == "../data.zarr/0"
    assert os.readlink(stores["view"] / "labels" / "segmentation") == "../../segmentation.zarr"

    def no_links(*args, **kwargs):
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(os, "symlink", no_links)
    view.main([str(stores["data"]), str(stores["segmentation"]), str(tmp_path / "copied.ome.zarr")])
    copied = tmp_path / "copied.ome.zarr"
    assert not (copied / "0").is_symlink() and (copied / "labels" / "segmentation" / "0").is_dir()
    assert [layer.name for layer in open_in_napari(copied).layers][1:] == ["labels/labels/segmentation",
                                                                          "labels/labels/ground_truth"]


def test_an_unlabelled_dataset_gets_the_segmentation_only(stores, tmp_path):
    tifffile.imwrite(tmp_path / "images.tif", np.zeros(SHAPE, np.uint8), photometric="minisblack")
    ingest.main(["--images", str(tmp_path / "images.tif"), "--out", str(tmp_path / "data.zarr")])
    view.main([str(tmp_path / "data.zarr"), str(stores["segmentation"]), str(tmp_path / "view.ome.zarr")])
    assert zarr.open_group(str(tmp_path / "view.ome.zarr"), mode="r")["labels"].attrs["labels"] == ["segmentation"]


@pytest.mark.parametrize("store, axes, dtype", [("segmentation", "ZYX", np.uint32), ("predictions", "CZYX", np.float32)])
def test_the_tiff_export_keeps_values_voxel_size_and_channel_names(stores, tmp_path, store, axes, dtype):
    out = tmp_path / f"{store}.ome.tif"
    tiff.main([str(stores[store]), str(out)])
    with tifffile.TiffFile(out) as exported:
        assert exported.is_ome and exported.series[0].axes == axes and exported.series[0].dtype == dtype
        np.testing.assert_array_equal(exported.asarray(), io.open_store(stores[store])[io.LEVEL0][:])
        channels = [line.split('"')[0] for line in exported.ome_metadata.split('Name="')[2:]]
    assert channels == (["background", "foreground"] if axes == "CZYX" else [])
    if axes == "ZYX":  # a stack unetflow reads back, at its voxel size
        assert open_stack(out).voxel_size == VoxelSize(**EM)
    assert not list(tmp_path.glob(".*tmp*"))


def test_an_exported_segmentation_ingests_again_at_its_voxel_size(stores, tmp_path):
    tiff.main([str(stores["segmentation"]), str(tmp_path / "segmentation.ome.tif")])
    ingest.main(["--images", str(tmp_path / "segmentation.ome.tif"), "--out", str(tmp_path / "again.zarr")])
    again = io.open_store(tmp_path / "again.zarr")
    assert ngff.voxel_size_of(again) == VoxelSize(**EM)
    assert io.open_raw(again).attrs["unetflow"]["voxel_size"]["source"] == "file"
