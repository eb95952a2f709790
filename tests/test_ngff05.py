"""The NGFF 0.5 option (``ngff: "0.5"``): a volume's stores on Zarr format 3 with sharded arrays,
valid NGFF 0.5 (ome-zarr-models), opened in napari, holding what the NGFF 0.4 stores hold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr_models import v05

from test_view import open_in_napari
from unetflow import io, ngff
from unetflow.steps import ingest, segment, view
from unetflow.voxel_size import VoxelSize

EM = {"z": 8, "y": 8, "x": 8, "unit": "nanometer"}
SHAPE = (40, 300, 260)  # 3 x 3 blocks of 128 in y and x: segmented block by block; 2 pyramid levels


def cells() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:35, 20:140, 20:120] = 255
    labels[5:35, 150:290, 130:250] = 255  # across the blocks' faces at 128 and 256
    return labels


def write_stores(folder: Path, version: str) -> dict[str, Path]:
    folder.mkdir()
    raw = np.random.default_rng(0).integers(20, 201, SHAPE, dtype=np.uint8)
    tifffile.imwrite(folder / "images.tif", raw, photometric="minisblack")
    tifffile.imwrite(folder / "labels.tif", cells(), photometric="minisblack")
    ingest.main(["--images", str(folder / "images.tif"), "--labels", str(folder / "labels.tif"), "--out",
                 str(folder / "data.zarr"), "--voxel-size", json.dumps(EM), "--dims", "3", "--ngff", version])
    predictions = io.create_group(folder / "predictions.zarr", {"0.4": 2, "0.5": 3}[version])
    foreground = np.where(cells() > 0, 0.95, 0.05).astype(np.float32)
    ngff.create_image(predictions, (2, *SHAPE), "float32", VoxelSize(**EM), name="probabilities",
                      channel_names=["background", "foreground"], volume=True)[:] = np.stack([1 - foreground, foreground])
    ngff.write_pyramid(predictions)
    segment.main([str(folder / "predictions.zarr"), str(folder / "segmentation.zarr"), "--dims", "3",
                  "--settings", '{"settings": "fixed", "method": "components"}', "--workers", "2"])
    view.main([str(folder / "data.zarr"), str(folder / "segmentation.zarr"), str(folder / "view.ome.zarr"),
               "--name", "volume"])
    return {name: folder / f"{name}.zarr" for name in ("data", "predictions", "segmentation")} | {
        "view": folder / "view.ome.zarr"}


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("ngff")
    return {version: write_stores(folder / version, version) for version in ("0.4", "0.5")}


def test_every_store_is_valid_ngff_05_on_zarr_3(both):
    stores = both["0.5"]
    for name in ("data", "predictions", "segmentation", "view"):
        group = zarr.open_group(str(stores[name]), mode="r")
        assert io.zarr_format_of(group) == 3 and group.attrs["ome"]["version"] == "0.5"
        v05.Image.from_zarr(group)
    for label in ("data.zarr/labels/objects", "data.zarr/labels/classes", "view.ome.zarr/labels/segmentation"):
        v05.ImageLabel.from_zarr(zarr.open_group(str(stores["data"].parent / label), mode="r"))


def test_volumes_are_sharded_eight_chunks_a_file(both):
    level0 = zarr.open_group(str(both["0.5"]["data"]), mode="r")["0"]
    assert level0.chunks == (40, 128, 128) and level0.shards == (40, 256, 256)
    files = {version: sum(1 for path in both[version]["segmentation"].rglob("*") if path.is_file())
             for version in both}
    assert files["0.5"] < files["0.4"]


def test_the_05_stores_hold_what_the_04_stores_hold(both):
    for name in ("data", "predictions", "segmentation"):
        old, new = (zarr.open_group(str(both[version][name]), mode="r") for version in ("0.4", "0.5"))
        np.testing.assert_array_equal(new["0"][:], old["0"][:])
        assert ngff.voxel_size_of(new) == ngff.voxel_size_of(old)
    assert io.open_objects(both["0.5"]["segmentation"])[:].max() == 2  # the two cells, across block faces


def test_napari_opens_the_05_view_with_its_labels_at_scale(both):
    layers = open_in_napari(both["0.5"]["view"]).layers
    assert [type(layer).__name__ for layer in layers] == ["Image", "Labels", "Labels"]
    for layer in layers:
        assert layer.scale.tolist() == [8.0, 8.0, 8.0]
    np.testing.assert_array_equal(np.asarray(layers[1].data[0]), io.open_objects(both["0.5"]["segmentation"])[:])
