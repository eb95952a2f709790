import errno
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from unetflow import cli, io, ngff
from unetflow.augmentation import AugmentSettings, OnlineSamples, augment_sample, draw_geometry
from unetflow.geometry import margin, output_size
from unetflow.methods.architectures import ModelConfig
from unetflow.steps import augment
from unetflow.steps.augment import precompute

DEFAULTS = AugmentSettings.from_config({})  # the schema's (the paper's) transforms

ZERO = replace(
    DEFAULTS, elastic_sigma=0, rotation_degrees=0, flip_probability=0, brightness=0, contrast=0, gamma=0, noise_std=0
)
STRONG = replace(DEFAULTS, flip_probability=0.5, rotation_degrees=180, elastic_sigma=10, gray_probability=0)


def planes(seed=0, shape=(120, 140)):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=shape).astype(np.float32)
    labels = rng.choice(np.array([0, 3, 7], dtype=np.uint8), size=shape)
    weights = rng.random(shape).astype(np.float32)
    return image, labels, weights


def test_zero_magnitudes_give_the_identity_exactly():
    image, labels, weights = planes()
    for seed in range(6):
        tile, label_tile, weight_tile = augment_sample(
            image, labels, weights, np.random.default_rng(seed), settings=ZERO, input_size=61, output_size=21
        )
        center = draw_geometry(np.random.default_rng(seed), image.shape, 61, ZERO).center
        top, left = int(center[0]) - 30 + 61, int(center[1]) - 30 + 61  # in the padded planes
        window = (slice(top, top + 61), slice(left, left + 61))
        inner = (slice(top + 20, top + 41), slice(left + 20, left + 41))
        np.testing.assert_array_equal(tile, np.pad(image, 61, mode="reflect")[window])
        np.testing.assert_array_equal(label_tile, np.pad(labels, 61, mode="reflect")[inner])
        np.testing.assert_array_equal(weight_tile, np.pad(weights, 61, mode="reflect")[inner])


def test_label_values_stay_within_the_original_set():
    image, labels, weights = planes()
    for seed in range(10):
        _, label_tile, _ = augment_sample(
            image, labels, weights, np.random.default_rng(seed), settings=STRONG, input_size=61, output_size=41
        )
        assert set(np.unique(label_tile)) <= {0, 3, 7}


def test_image_labels_and_weights_share_one_geometry():
    shape = (150, 150)
    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    weights = np.zeros(shape, np.float32)
    for plane, value in ((image, 10.0), (labels, 1), (weights, 5.0)):
        plane[70:76, 80:86] = value  # one marker, in all three
    for seed in range(8):
        rng = np.random.default_rng(seed)
        tile, label_tile, weight_tile = augment_sample(
            image, labels, weights, rng, settings=STRONG, input_size=81, output_size=81
        )
        if label_tile.sum() == 0:
            continue  # the marker fell outside this tile
        marker_in_labels = np.argwhere(label_tile == 1).mean(axis=0)
        marker_in_image = np.argwhere(tile > 5).mean(axis=0)
        marker_in_weights = np.argwhere(weight_tile > 2.5).mean(axis=0)
        np.testing.assert_allclose(marker_in_image, marker_in_labels, atol=1.0)
        np.testing.assert_allclose(marker_in_weights, marker_in_labels, atol=1.0)


@pytest.fixture
def training_stores(tmp_path) -> tuple[Path, Path]:
    image, labels, weights = planes(shape=(64, 80))
    data = io.create_group(tmp_path / "data.zarr")
    raw = ngff.create_image(data, (2, 64, 80), np.dtype(np.uint8), name="raw")
    raw[:] = np.stack([(image * 30 + 128).clip(0, 255).astype(np.uint8)] * 2)
    raw.attrs["unetflow"] = {"normalization": {"mean": 128.0, "std": 30.0}}
    ngff.create_label(data, "classes", (2, 64, 80), np.dtype(np.uint8))[:] = np.stack([labels] * 2)
    ngff.create_label(data, "objects", (2, 64, 80), np.dtype(np.uint32))
    weight_store = io.create_group(tmp_path / "weights.zarr")
    ngff.create_image(weight_store, (2, 64, 80), np.dtype(np.float32), name="weights", pyramid=False)[:] = np.stack([weights] * 2)
    return tmp_path / "data.zarr", tmp_path / "weights.zarr"


def test_sample_i_is_the_same_with_one_or_two_workers_and_online(tmp_path, training_stores):
    data, weights = training_stores
    samples = OnlineSamples([data], [weights], settings=replace(DEFAULTS, noise_probability=0.5),
                            input_size=57, output_size=33, seed=4, length=20)
    stores = []
    for workers, scheduler in ((1, "threads"), (2, "threads"), (2, "processes")):
        out = tmp_path / f"aug-{workers}-{scheduler}.zarr"
        precompute(samples, out, scheduler=scheduler, workers=workers)
        stores.append(zarr.open_group(str(out), mode="r"))
    for name in ("image", "labels", "weights"):
        for other in stores[1:]:
            np.testing.assert_array_equal(stores[0][name][:], other[name][:])
    for index in (0, 13, 19):
        for name, online in zip(("image", "labels", "weights"), samples[index]):
            np.testing.assert_array_equal(stores[0][name][index], online)


def test_tile_shapes_match_the_configured_architecture(tmp_path, training_stores):
    data, weights = training_stores
    input_size, output = ModelConfig(depth=3, padding="valid").sample_sizes(30)
    assert output_size(input_size, 3) == output and input_size - output == 2 * margin(3)
    samples = OnlineSamples([data], [weights], settings=STRONG, input_size=input_size, output_size=output,
                            seed=0, length=3)
    image_tile, label_tile, weight_tile = samples[0]
    assert image_tile.shape == (input_size, input_size) and image_tile.dtype == np.float32
    assert label_tile.shape == weight_tile.shape == (output, output)
    assert label_tile.dtype == np.uint8 and weight_tile.dtype == np.float32


def test_background_only_tiles_are_written_so_the_store_reads_as_complete(tmp_path, training_stores):
    data, weights = training_stores
    classes = zarr.open_group(str(data), mode="r+")["labels/classes/0"]
    sparse = np.zeros(classes.shape, np.uint8)
    sparse[:, 30:34, 40:44] = 1  # one small object: most label tiles are all zero
    classes[:] = sparse
    samples = OnlineSamples([data], [weights], settings=ZERO, input_size=21, output_size=9, seed=0, length=24)
    precompute(samples, tmp_path / "sparse.zarr", scheduler="threads", workers=2)
    store = io.open_store(tmp_path / "sparse.zarr")
    labels = io.checked_array(store, "labels")  # raises if a chunk is missing
    assert labels.nchunks_initialized == 24
    assert (labels[:].reshape(24, -1).max(axis=1) == 0).sum() > 12  # the case: most tiles are background


def test_a_full_disk_names_the_store_and_leaves_nothing_behind(tmp_path, training_stores, monkeypatch, caplog):
    data, weights = training_stores
    write = augment.write_samples

    def disk_fills_at_the_first_task(samples, target, start, stop):
        if start == 0:
            raise OSError(errno.ENOSPC, "No space left on device", f"{io.location(target)}/image/0.0.0")
        time.sleep(0.5)  # the other tasks are still writing when the first one fails
        return write(samples, target, start, stop)

    monkeypatch.setattr(augment, "write_samples", disk_fills_at_the_first_task)
    with pytest.raises(SystemExit):
        cli.run(augment.main, ["--data", str(data), "--weights", str(weights), "--out", str(tmp_path / "out.zarr"),
                               "--settings", '{"samples": 32}', "--input-size", "21", "--output-size", "9", "--workers", "2"])
    message = caplog.records[-1].getMessage()
    assert ".out.zarr.tmp-" in message and "image/0.0.0: No space left on device while writing it" in message
    assert "Free space on that disk" in message
    time.sleep(1)
    assert not list(tmp_path.glob("*out.zarr*"))  # nor did a late task write into the removed folder
