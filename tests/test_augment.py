import errno
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from unetflow import cli, io, ngff
from unetflow.augmentation import (
    AugmentSettings,
    OnlineSamples,
    augment_sample,
    augment_volume_sample,
    draw_geometry,
    draw_volume_geometry,
)
from unetflow.errors import InputError
from unetflow.geometry import margin, output_size
from unetflow.intensity import NormalizedImage
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
            image[None], labels, weights, np.random.default_rng(seed), settings=ZERO, input_size=61, output_size=21
        )
        assert tile.shape == (1, 61, 61)
        center = draw_geometry(np.random.default_rng(seed), image.shape, 61, ZERO).center
        top, left = int(center[0]) - 30 + 61, int(center[1]) - 30 + 61  # in the padded planes
        window = (slice(top, top + 61), slice(left, left + 61))
        inner = (slice(top + 20, top + 41), slice(left + 20, left + 41))
        np.testing.assert_array_equal(tile[0], np.pad(image, 61, mode="reflect")[window])
        np.testing.assert_array_equal(label_tile, np.pad(labels, 61, mode="reflect")[inner])
        np.testing.assert_array_equal(weight_tile, np.pad(weights, 61, mode="reflect")[inner])


def test_label_values_stay_within_the_original_set():
    image, labels, weights = planes()
    for seed in range(10):
        _, label_tile, _ = augment_sample(
            image[None], labels, weights, np.random.default_rng(seed), settings=STRONG, input_size=61, output_size=41
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
            image[None], labels, weights, rng, settings=STRONG, input_size=81, output_size=81
        )
        tile = tile[0]
        if label_tile.sum() == 0:
            continue  # the marker fell outside this tile
        marker_in_labels = np.argwhere(label_tile == 1).mean(axis=0)
        marker_in_image = np.argwhere(tile > 5).mean(axis=0)
        marker_in_weights = np.argwhere(weight_tile > 2.5).mean(axis=0)
        np.testing.assert_allclose(marker_in_image, marker_in_labels, atol=1.0)
        np.testing.assert_allclose(marker_in_weights, marker_in_labels, atol=1.0)


def write_training_stores(folder: Path, image, labels, weights) -> tuple[Path, Path]:
    """data.zarr (image as uint8 = 128 + 30 x image, classes) and weights.zarr of (z, y, x) volumes."""
    data = io.create_group(folder / "data.zarr")
    raw = ngff.create_image(data, image.shape, np.dtype(np.uint8), name="raw")
    raw[:] = (image * 30 + 128).clip(0, 255).astype(np.uint8)
    raw.attrs["unetflow"] = {"normalization": {"mean": 128.0, "std": 30.0}}
    ngff.create_label(data, "classes", image.shape, np.dtype(np.uint8))[:] = labels
    ngff.create_label(data, "objects", image.shape, np.dtype(np.uint32))
    weight_store = io.create_group(folder / "weights.zarr")
    ngff.create_image(weight_store, image.shape, np.dtype(np.float32), name="weights", pyramid=False)[:] = weights
    return folder / "data.zarr", folder / "weights.zarr"


@pytest.fixture
def training_stores(tmp_path) -> tuple[Path, Path]:
    return write_training_stores(tmp_path, *(np.stack([plane] * 2) for plane in planes(shape=(64, 80))))


@pytest.fixture
def volume_stores(tmp_path) -> tuple[Path, Path]:
    return write_training_stores(tmp_path, *planes(shape=(10, 40, 48)))


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
    assert image_tile.shape == (1, input_size, input_size) and image_tile.dtype == np.float32
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


STRONG_3D = replace(STRONG, elastic_sigma=5)  # elastic, rotation and flips all on


def volume_samples(stores: tuple[Path, Path], **options) -> OnlineSamples:
    data, weights = stores
    return OnlineSamples([data], [weights], **options)


def test_volume_label_values_stay_within_the_original_set():
    image, labels, weights = planes(shape=(14, 50, 60))
    for seed in range(6):
        geometry = draw_volume_geometry(np.random.default_rng(seed), image.shape, (12, 36, 36), STRONG_3D)
        assert geometry.displacement is not None and geometry.rotation != 0
        _, label_tile, _ = augment_volume_sample(image[None], labels, weights, np.random.default_rng(seed),
                                                 settings=STRONG_3D, input_shape=(12, 36, 36), output_shape=(8, 28, 28))
        assert set(np.unique(label_tile)) <= {0, 3, 7}


def test_volume_image_labels_and_weights_share_one_geometry():
    shape = (16, 60, 60)
    volumes = np.zeros(shape, np.float32), np.zeros(shape, np.uint8), np.zeros(shape, np.float32)
    for volume, value in zip(volumes, (10.0, 1, 5.0)):
        volume[6:10, 26:32, 30:36] = value  # one marker, in all three
    found = 0
    for seed in range(12):
        tile, label_tile, weight_tile = augment_volume_sample(volumes[0][None], *volumes[1:], np.random.default_rng(seed),
                                                              settings=STRONG_3D, input_shape=(14, 40, 40),
                                                              output_shape=(14, 40, 40))
        tile = tile[0]
        if label_tile.sum() < 20:
            continue  # the marker fell (nearly) outside this tile
        found += 1
        marker_in_labels = np.argwhere(label_tile == 1).mean(axis=0)
        np.testing.assert_allclose(np.argwhere(tile > 5).mean(axis=0), marker_in_labels, atol=1.0)
        np.testing.assert_allclose(np.argwhere(weight_tile > 2.5).mean(axis=0), marker_in_labels, atol=1.0)
    assert found >= 3


def test_volume_samples_have_the_configured_shapes(volume_stores):
    samples = volume_samples(volume_stores, settings=STRONG_3D, input_size=(12, 36, 35), output_size=[4, 28, 27],
                             seed=0, length=3)
    assert samples.dims == 3 and samples.input_shape == (12, 36, 35) and samples.output_shape == (4, 28, 27)
    image_tile, label_tile, weight_tile = samples[2]
    assert image_tile.shape == (1, 12, 36, 35) and image_tile.dtype == np.float32
    assert label_tile.shape == weight_tile.shape == (4, 28, 27)
    assert label_tile.dtype == np.uint8 and weight_tile.dtype == np.float32


def test_volume_sample_i_depends_only_on_the_seed_and_i(volume_stores):
    def samples(seed):
        return volume_samples(volume_stores, settings=STRONG_3D, input_size=(12, 36, 36), output_size=(4, 28, 28),
                              seed=seed, length=5)

    first, second = samples(1), samples(1)
    drawn = [first[index] for index in (4, 0, 4)]
    for tile, again, fresh in zip(drawn[0], drawn[2], second[4]):
        np.testing.assert_array_equal(tile, again)
        np.testing.assert_array_equal(tile, fresh)
    assert not np.array_equal(samples(2)[4][0], drawn[0][0])


def padded_window(center, shape, pad):
    """The ``shape`` tile around ``center`` in a volume padded by ``pad`` on every side."""
    starts = [round(c - (edge - 1) / 2) + pad for c, edge in zip(center, shape)]
    return tuple(slice(start, start + edge) for start, edge in zip(starts, shape))


def test_volume_sample_without_transforms_is_the_normalised_crop_mirrored_at_the_border(volume_stores):
    input_shape, output_shape = (15, 44, 43), (7, 30, 29)  # larger than the volume in z and y: always mirrored
    samples = volume_samples(volume_stores, settings=ZERO, input_size=input_shape, output_size=output_shape,
                             seed=3, length=6)
    data = io.open_store(volume_stores[0])
    raw = io.open_raw(data)
    pad = 50
    image = np.pad(NormalizedImage.of(raw)[:][0], pad, mode="reflect")
    labels = np.pad(io.open_labels(data)[:], pad, mode="reflect")
    weights = np.pad(io.open_store(volume_stores[1])["0"][:], pad, mode="reflect")
    for index in range(6):
        rng = np.random.default_rng([3, index])
        rng.integers(1)  # the store
        center = draw_volume_geometry(rng, raw.shape, input_shape, ZERO).center
        tile, label_tile, weight_tile = samples[index]
        np.testing.assert_array_equal(tile[0], image[padded_window(center, input_shape, pad)])
        np.testing.assert_array_equal(label_tile, labels[padded_window(center, output_shape, pad)])
        np.testing.assert_array_equal(weight_tile, weights[padded_window(center, output_shape, pad)])


def test_precomputed_volume_store_equals_online_samples(tmp_path, volume_stores):
    data, weights = volume_stores
    options = {"samples": 10, "seed": 5, "transforms": {"elastic": {"sigma": 5}, "noise": {"probability": 0.5}}}
    out, preview = tmp_path / "augmented.zarr", tmp_path / "preview.png"
    augment.main(["--data", str(data), "--weights", str(weights), "--out", str(out), "--preview", str(preview),
                  "--input-size", "12x36x36", "--output-size", "4x28x28", "--settings", json.dumps(options),
                  "--workers", "2"])
    store = io.open_store(out)
    assert store["image"].shape == (10, 1, 12, 36, 36) and store["image"].chunks == (1, 1, 12, 36, 36)
    assert store["labels"].shape == store["weights"].shape == (10, 4, 28, 28)
    assert store["labels"].chunks == (1, 4, 28, 28)
    attributes = store.attrs["unetflow"]
    assert attributes["input_size"] == [12, 36, 36] and attributes["output_size"] == [4, 28, 28]
    assert preview.stat().st_size > 0
    samples = OnlineSamples([data], [weights], settings=AugmentSettings.from_config(options["transforms"]),
                            input_size=(12, 36, 36), output_size=(4, 28, 28), seed=5, length=10)
    for index in range(10):
        for name, online in zip(io.SAMPLE_ARRAYS, samples[index]):
            np.testing.assert_array_equal(store[name][index], online)


def test_size_options_take_n_or_zyx_and_name_the_option_when_wrong():
    assert augment.sample_sizes("572", "388") == (572, 388)
    assert augment.sample_sizes("44x140x140", "4x52x52") == ((44, 140, 140), (4, 52, 52))
    for text in ("44x92", "0x92x92", "44,92,92", "big", ""):
        with pytest.raises(InputError, match="--input-size"):
            augment.sample_sizes(text, "60")
        with pytest.raises(InputError, match="--output-size"):
            augment.sample_sizes("44x92x92", text)
    with pytest.raises(InputError, match="both as N"):
        augment.sample_sizes("44x92x92", "60")


def test_the_elastic_warp_of_a_volume_is_one_physical_length_on_every_axis():
    settings = replace(DEFAULTS, elastic_probability=1.0, elastic_sigma=6.0)
    isotropic = draw_volume_geometry(np.random.default_rng(4), (40, 60, 60), (12, 20, 20), settings)
    long_z = draw_volume_geometry(np.random.default_rng(4), (40, 60, 60), (12, 20, 20), settings, (2.5, 1.0, 1.0))
    # voxels 2.5 x longer in z: the same warp, in z slices 2.5 x fewer; y and x unchanged
    np.testing.assert_allclose(long_z.displacement[0], isotropic.displacement[0] / 2.5, atol=1e-12)
    np.testing.assert_array_equal(long_z.displacement[1:], isotropic.displacement[1:])
