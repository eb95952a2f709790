"""Ensembles (unetflow.ensemble): the mean of members' prediction stores, equal to numpy's mean,
exactly a member's values for identical members, and refused where members disagree."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from ome_zarr_models.v04 import Image
from skimage.transform import downscale_local_mean

from unetflow import io, ngff
from unetflow.ensemble import write_ensemble
from unetflow.errors import InputError
from unetflow.prediction import quantise
from unetflow.steps import ensemble as ensemble_step
from unetflow.voxel_size import VoxelSize

VOXEL = VoxelSize(z=50, y=4, x=4, unit="nanometer")


def prediction_store(path, probabilities: np.ndarray, dtype: str = "float32", voxel_size: VoxelSize = VOXEL,
                     model: str = "m.pt"):
    """A prediction store as the predict step writes it, holding ``probabilities`` (c, z, y, x)."""
    attributes = {"model": model, "dims": 2, "tile": [64, 64], "margin": [8, 8], "test_time_augmentation": False,
                  "dtype": dtype, "scale": 255 if dtype == "uint8" else 1}
    group = ngff.create_probabilities(path, probabilities.shape, dtype, attributes, voxel_size,
                                      channel_names=["background", "foreground"])
    io.level0_to_write(group)[:] = quantise(probabilities, dtype)
    ngff.write_pyramid(group)
    return path


def random_probabilities(seed: int, shape=(2, 3, 300, 280)) -> np.ndarray:
    foreground = np.random.default_rng(seed).random(shape[1:], dtype=np.float32)
    return np.stack([1 - foreground, foreground])


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_an_ensemble_of_k_identical_members_is_the_member_exactly(tmp_path, dtype, k):
    member = prediction_store(tmp_path / "member.zarr", random_probabilities(0), dtype)
    write_ensemble([member] * k, tmp_path / "ensemble.zarr")
    np.testing.assert_array_equal(io.open_probabilities(tmp_path / "ensemble.zarr")[:],
                                  io.open_probabilities(member)[:])
    assert io.open_probabilities(tmp_path / "ensemble.zarr").dtype == np.dtype(dtype)


def test_the_ensemble_is_the_voxelwise_mean_of_its_members_and_an_ome_zarr_image(tmp_path):
    values = [random_probabilities(seed) for seed in range(3)]
    members = [prediction_store(tmp_path / f"m{seed}.zarr", value, model=f"m{seed}.pt")
               for seed, value in enumerate(values)]
    ensemble_step.main([*map(str, members), "--out", str(tmp_path / "ensemble.zarr"), "--workers", "2"])
    mean = io.open_probabilities(tmp_path / "ensemble.zarr")
    np.testing.assert_allclose(mean[:], np.mean(values, axis=0, dtype=np.float64).astype(np.float32), rtol=0,
                               atol=1e-7)
    assert mean.attrs["unetflow"]["members"] == ["m0.pt", "m1.pt", "m2.pt"]
    group = zarr.open_group(str(tmp_path / "ensemble.zarr"), mode="r")
    Image.from_zarr(group)  # valid OME-Zarr 0.4
    np.testing.assert_allclose(group["1"][:], downscale_local_mean(mean[:], (1, 1, 2, 2)), atol=1e-6)  # pyramid


@pytest.mark.parametrize("change, message", [
    ({"probabilities": random_probabilities(1, (2, 2, 300, 280))}, "shape"),
    ({"dtype": "uint8"}, "dtype"),
    ({"voxel_size": VoxelSize(z=40, y=4, x=4, unit="nanometer")}, "voxels of"),
])
def test_members_that_cannot_be_averaged_are_refused_and_nothing_is_written(tmp_path, change, message):
    first = prediction_store(tmp_path / "first.zarr", random_probabilities(0))
    second = prediction_store(tmp_path / "second.zarr", **{"probabilities": random_probabilities(2)} | change)
    with pytest.raises(InputError, match=message) as error:
        write_ensemble([first, second], tmp_path / "ensemble.zarr")
    assert "second.zarr" in str(error.value)
    assert not (tmp_path / "ensemble.zarr").exists()
