"""Images as fluorescence labs have them: several channels, and intensity normalisation that
survives outliers, the same in training, prediction and the bioimage.io export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from conftest import copy_workflow, snakemake
from test_starter import QUICK, init
from unetflow import inference, intensity, io, package_normalization, synthetic
from unetflow.errors import InputError
from unetflow.intensity import Accumulator, NormalizedImage, histogram_percentile
from unetflow.methods.architectures import ModelConfig
from unetflow.model import UNet
from unetflow.readers import open_stack
from unetflow.steps import ingest, predict

PERCENTILE_IMAGE = {"method": "percentile", "scope": "image", "percentiles": [1, 99.8]}


def two_channel_stack(count: int, size: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(z, c, y, x) uint16 fluorescence-like slices, a few saturated hot pixels in each, and their
    instance labels: channel 0 the cells, channel 1 their membranes, dimmer."""
    images, _, instances = synthetic.generate_stack(count, size, seed=seed)
    cells = images.astype(np.float64) * 40 + 500
    membranes = (255 - images.astype(np.float64)) * 12 + 200
    stack = np.stack([cells, membranes], axis=1)
    hot = np.random.default_rng(seed).integers(0, size, (count, 2, 5, 2))
    for z in range(count):
        for channel in range(2):
            stack[z, channel, hot[z, channel, :, 0], hot[z, channel, :, 1]] = 65535
    return stack.astype(np.uint16), instances


def write_hyperstack(path: Path, stack: np.ndarray) -> Path:
    """An ImageJ hyperstack (axes ZCYX, or CYX for one slice), as Fiji saves a composite."""
    axes = "ZCYX" if len(stack) > 1 else "CYX"
    tifffile.imwrite(path, stack if len(stack) > 1 else stack[0], imagej=True, metadata={"axes": axes})
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_dataset_percentiles_from_a_histogram_equal_numpys(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    values = rng.integers(info.min, info.max, size=(2, 3, 41, 37), endpoint=True).astype(dtype)
    accumulator = Accumulator("percentile", "dataset", (1.0, 99.8), 2, np.dtype(dtype), values[0].size)
    for z in range(3):
        accumulator.add(values[:, z:z + 1])
    found = accumulator.result()
    low, high = np.percentile(values.reshape(2, -1).astype(np.float64), [1.0, 99.8], axis=1)
    np.testing.assert_array_equal(found.offset[0], low)
    np.testing.assert_allclose(found.scale[0], high - low, rtol=1e-12)
    assert histogram_percentile(np.bincount([3, 3, 7]), 50) == 3.0


def test_float_dataset_percentiles_and_zscores_are_exact_below_the_sample_limit():
    values = np.random.default_rng(1).normal(5, 2, size=(2, 4, 30, 30)).astype(np.float32)
    for method in ("percentile", "zscore"):
        accumulator = Accumulator(method, "dataset", (2.0, 98.0), 2, values.dtype, values[0].size)
        for z in range(4):
            accumulator.add(values[:, z:z + 1])
        found = accumulator.result()
        flat = values.reshape(2, -1).astype(np.float64)
        if method == "zscore":
            expected = flat.mean(axis=1), flat.std(axis=1)
        else:
            low, high = np.percentile(flat, [2.0, 98.0], axis=1)
            expected = low, high - low
        np.testing.assert_allclose(found.offset[0], expected[0], rtol=1e-9)
        np.testing.assert_allclose(found.scale[0], expected[1], rtol=1e-6)


def test_per_image_statistics_normalise_each_slice_and_channel_by_its_own():
    values = np.random.default_rng(2).gamma(2, 50, size=(2, 3, 20, 20))
    values[:, 1] *= 10  # a brighter slice
    accumulator = Accumulator("percentile", "image", (1.0, 99.8), 2, values.dtype, values[0].size)
    for z in range(3):
        accumulator.add(values[:, z])
    normalization = accumulator.result()
    assert normalization.offset.shape == (3, 2)
    for z in range(3):
        normalised = normalization.apply(values[:, z], z)
        for channel in range(2):
            low, high = np.percentile(normalised[channel], [1.0, 99.8])
            assert low == pytest.approx(0, abs=1e-5) and high == pytest.approx(1, abs=1e-5)
    region = normalization.apply(values[:, 1:3], slice(1, 3))
    np.testing.assert_allclose(region[:, 1], normalization.apply(values[:, 2], 2), rtol=1e-6)


def test_a_hot_pixel_does_not_squash_a_percentile_normalisation():
    """What the percentile method is for: one saturated pixel changes a z-score scale ~10x."""
    image = np.random.default_rng(3).normal(100, 5, size=(1, 64, 64))
    hot = image.copy()
    hot[0, 3, 3] = 65535
    scales = {}
    for method in ("zscore", "percentile"):
        scales[method] = [intensity.image_statistics(values, method, (1, 99.8))[1][0] for values in (image, hot)]
    assert scales["percentile"][1] == pytest.approx(scales["percentile"][0], rel=0.05)
    assert scales["zscore"][1] > 10 * scales["zscore"][0]


def test_a_two_channel_hyperstack_is_ingested_channels_first_for_viewers(tmp_path):
    stack, instances = two_channel_stack(3, 48)
    images = write_hyperstack(tmp_path / "cells.tif", stack)
    tifffile.imwrite(tmp_path / "labels.tif", instances, photometric="minisblack")
    ingest.ingest(open_stack(images), open_stack(tmp_path / "labels.tif", labels=True), tmp_path / "data.zarr",
                  label_kind="instance", num_classes=2, normalize=PERCENTILE_IMAGE)
    store = io.open_store(tmp_path / "data.zarr")
    raw = io.open_raw(store)
    assert raw.shape == (2, 3, 48, 48) and raw.chunks == (1, 1, 48, 48)
    np.testing.assert_array_equal(raw[:], stack.transpose(1, 0, 2, 3))
    assert [axis["name"] for axis in store.attrs["multiscales"][0]["axes"]] == ["c", "z", "y", "x"]
    assert [channel["label"] for channel in store.attrs["omero"]["channels"]] == ["channel 0", "channel 1"]
    assert io.open_labels(store, "objects").shape == (3, 48, 48)
    image = NormalizedImage.of(raw)
    assert image.channels == 2 and image.shape == (3, 48, 48)
    for z in range(3):
        expected = [(plane - np.percentile(plane, 1)) / np.ptp(np.percentile(plane, [1, 99.8]))
                    for plane in stack[z].astype(np.float64)]
        np.testing.assert_allclose(image[z], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(image[1:3, 5:20, 7:9], np.stack([image[1], image[2]], axis=1)[:, :, 5:20, 7:9])


def save_trained_like(path: Path, channels: int, normalization: dict) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(depth=2, base_channels=8, in_channels=channels)
    inference.save_model(path, config, UNet(config), normalization=normalization, iterations=1)
    return path


def test_a_model_applies_only_to_data_of_its_channels_and_normalisation(tmp_path):
    stack, _ = two_channel_stack(1, 48)
    ingest.ingest(open_stack(write_hyperstack(tmp_path / "two.tif", stack)), None, tmp_path / "two.zarr",
                  label_kind="auto", num_classes=2, normalize=PERCENTILE_IMAGE)
    one = save_trained_like(tmp_path / "one.pt", 1, PERCENTILE_IMAGE)
    options = ["--settings", '{"tile": 28}', "--runtime", '{"device": "cpu"}']
    with pytest.raises(InputError, match=r"one\.pt takes images of 1 channel\(s\), but .*two\.zarr has 2"):
        predict.main([str(one), str(tmp_path / "two.zarr"), str(tmp_path / "p.zarr"), *options])
    zscored = save_trained_like(tmp_path / "zscored.pt", 2, {"method": "zscore", "scope": "dataset",
                                                              "percentiles": None, "offset": [1, 1], "scale": [2, 2]})
    with pytest.raises(InputError, match=r"trained on images normalised by .*zscore.* set the config's normalize"):
        predict.main([str(zscored), str(tmp_path / "two.zarr"), str(tmp_path / "p.zarr"), *options])
    assert not (tmp_path / "p.zarr").exists()


@pytest.mark.parametrize("normalize", [PERCENTILE_IMAGE, {"method": "zscore", "scope": "image"},
                                       {"method": "zscore", "scope": "dataset"},
                                       {"method": "percentile", "scope": "dataset", "percentiles": [2, 99]}])
def test_the_exported_package_normalises_an_image_as_training_did(tmp_path, normalize):
    """bioimage.io's own preprocessing (bioimageio.core) of a training slice equals unetflow's."""
    bioimageio_core = pytest.importorskip("bioimageio.core")
    from bioimageio.core.digest_spec import create_sample_for_model
    from unetflow.steps.export import main as export

    stack, _ = two_channel_stack(3, 60)  # 60 px: a valid input of the model, so the test tile is a whole slice
    ingest.ingest(open_stack(write_hyperstack(tmp_path / "cells.tif", stack)), None, tmp_path / "data.zarr",
                  label_kind="auto", num_classes=2, normalize=normalize)
    image = NormalizedImage.of(io.open_raw(io.open_store(tmp_path / "data.zarr")))
    model = save_trained_like(tmp_path / "model.pt", 2, image.normalization.recorded())
    package = tmp_path / "model.zip"
    export([str(model), str(package), "--data", str(tmp_path / "data.zarr"), "--tile", "20"])
    description = bioimageio_core.load_description(package)
    pipeline = bioimageio_core.create_prediction_pipeline(bioimageio_model=description, devices=["cpu"])
    sample = create_sample_for_model(description, inputs={"raw": stack[1][None].astype(np.float32)})
    pipeline.apply_preprocessing(sample)
    preprocessed = sample.members["raw"].data.to_numpy()[0]
    np.testing.assert_allclose(preprocessed, image[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(package_normalization.normalize(stack[1].astype(np.float32),
                                                               image.normalization.recorded()), preprocessed,
                               rtol=1e-5, atol=1e-5)
    pipeline.unload()


def test_channel_axis_of_the_config_reads_an_npy_and_a_wrong_one_is_named(tmp_path):
    stack, _ = two_channel_stack(2, 48)
    np.save(tmp_path / "cells.npy", stack)  # (z, c, y, x)
    ingest.main(["--images", str(tmp_path / "cells.npy"), "--out", str(tmp_path / "data.zarr"),
                 "--channel-axis", "1"])
    assert io.open_raw(io.open_store(tmp_path / "data.zarr")).shape == (2, 2, 48, 48)
    with pytest.raises(InputError, match=r"cells\.npy: channel_axis 7 is no axis"):
        ingest.main(["--images", str(tmp_path / "cells.npy"), "--out", str(tmp_path / "other.zarr"),
                     "--channel-axis", "7"])


@pytest.mark.slow
def test_a_two_channel_folder_trains_predicts_and_opens_in_napari(tmp_path):
    """From a folder of 2-channel TIFFs (Fiji composites) to segmentations, through unetflow init."""
    run = copy_workflow(tmp_path / "run")
    (run / "lab" / "images").mkdir(parents=True)
    (run / "lab" / "labels").mkdir()
    stack, instances = two_channel_stack(5, 96)
    for index in range(5):
        write_hyperstack(run / "lab" / "images" / f"cells {index}.tif", stack[index:index + 1])
        if index < 3:
            tifffile.imwrite(run / "lab" / "labels" / f"cells {index}.tif", instances[index])
    init(run, "lab", "--device", "cpu")
    config = yaml.safe_load((run / "lab.yaml").read_text())
    assert config["normalize"] == PERCENTILE_IMAGE
    (run / "quick.yaml").write_text(yaml.safe_dump(QUICK))
    snakemake(run, "--cores", "2", "--configfile", "lab.yaml", "quick.yaml")
    saved, architecture = inference.read_model_file(run / "results/models/unet/model.pt")
    assert architecture.in_channels == 2 and intensity.setting_in(saved["normalization"]) == PERCENTILE_IMAGE
    for dataset in config["predict_on"]:
        probabilities = io.open_probabilities(run / f"results/predictions/unet/{dataset}.zarr")
        assert probabilities.shape == (2, 1, 96, 96)
        assert (run / f"results/segmentation/unet/{dataset}.zarr").is_dir()
    from test_view import open_in_napari

    layers = open_in_napari(run / f"results/view/unet/{config['predict_on'][0]}.ome.zarr").layers
    images = [layer for layer in layers if type(layer).__name__ == "Image"]
    assert [layer.name.split(": ")[-1] for layer in images] == ["channel 0", "channel 1"]  # one layer a channel
    assert images[0].data[0].shape[-2:] == (96, 96)
    assert any(type(layer).__name__ == "Labels" for layer in layers)


def test_a_two_channel_volume_predicts_block_by_block_as_one_whole_pass(tmp_path):
    """3-D: each block's halo window keeps both channels, normalised per dataset."""
    config = ModelConfig(depth=2, base_channels=2, dropout=0.0, dims=3, planar_poolings=1, in_channels=2)
    volume = np.random.default_rng(4).integers(0, 4000, (2, 37, 30, 26)).astype(np.uint16)
    np.save(tmp_path / "cells.npy", volume)  # (c, z, y, x)
    ingest.main(["--images", str(tmp_path / "cells.npy"), "--out", str(tmp_path / "data.zarr"), "--channel-axis",
                 "0", "--dims", "3", "--normalize", json.dumps(PERCENTILE_IMAGE)])
    image = NormalizedImage.of(io.open_raw(io.open_store(tmp_path / "data.zarr")))
    assert image.normalization.offset.shape == (1, 2)  # a volume is one image
    torch.manual_seed(0)
    network = UNet(config)
    inference.save_model(tmp_path / "model.pt", config, network, normalization=image.normalization.recorded())
    predict.main([str(tmp_path / "model.pt"), str(tmp_path / "data.zarr"), str(tmp_path / "p.zarr"), "--settings",
                  '{"tile": 20, "precision": "fp32"}', "--runtime", '{"device": "cpu", "batch_size": 3}'])
    normalised = image[:]
    np.testing.assert_allclose(normalised[1, 5], (volume[1, 5] - image.normalization.offset[0, 1])
                               / image.normalization.scale[0, 1], rtol=1e-5)
    output = config.valid_output_shape_for(volume.shape[1:])
    padding = [(0, 0)] + [(m, m + o - s) for m, o, s in zip(config.margins, output, volume.shape[1:])]
    padded = np.pad(normalised, padding, mode="reflect")
    with torch.inference_mode():
        whole = torch.softmax(network.eval()(torch.from_numpy(padded)[None]), 1)[0][:, :37, :30, :26].numpy()
    np.testing.assert_allclose(io.open_probabilities(tmp_path / "p.zarr")[:], whole, atol=1e-5)
