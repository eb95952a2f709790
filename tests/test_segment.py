import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from skimage.metrics import adapted_rand_error

from unetflow import io, ngff
from unetflow.methods.segmenters import components, segment, watershed_fill
from unetflow.steps import segment as segment_step
from unetflow.voxel_size import VoxelSize


def known_cells() -> np.ndarray:
    """Four square cells on a 2x2 grid, touching across one-pixel membranes."""
    objects = np.zeros((64, 64), np.uint32)
    objects[2:31, 2:31], objects[2:31, 32:62] = 1, 2
    objects[32:62, 2:31], objects[32:62, 32:62] = 3, 4
    return objects


def test_components_of_a_known_probability_map_are_the_known_objects():
    objects = known_cells()
    probability = np.where(objects > 0, 0.9, 0.1)
    found = components(probability, threshold=0.5, min_size=0)
    assert found.max() == 4
    assert adapted_rand_error(objects, found)[0] == 0.0


def test_watershed_fills_membranes_and_closes_gaps_the_network_left_open():
    objects = known_cells()
    probability = np.where(objects > 0, 0.9, 0.1)
    probability[15, 31] = probability[46, 31] = 0.6  # two gaps in the membrane between cells
    assert components(probability, threshold=0.5, min_size=0).max() == 2  # the gaps merge cells pairwise
    filled = watershed_fill(probability, threshold=0.5, seeds="distance", h=2, min_size=0)
    assert filled.max() == 4 and filled.min() == 1  # every pixel belongs to a cell
    assert adapted_rand_error(objects, filled)[0] == 0.0  # membranes (label 0) are ignored by the score
    for label in range(1, 5):
        assert len(np.unique(filled[objects == label])) == 1


def test_small_objects_are_dropped():
    objects = known_cells()
    probability = np.where(objects > 0, 0.9, 0.1)
    probability[40:42, 40:42] = 0.0  # a hole does not matter
    probability[0:2, 62:64] = 0.9  # a 4-pixel speck
    assert components(probability, threshold=0.5, min_size=0).max() == 5
    assert components(probability, threshold=0.5, min_size=10).max() == 4


def test_probability_seeds_also_find_the_cells():
    objects = known_cells()
    probability = np.where(objects > 0, 0.9, 0.1)
    filled = watershed_fill(probability, threshold=0.5, seeds="probability", h=0.05, min_size=0)
    assert adapted_rand_error(objects, filled)[0] == 0.0


def nan_prediction_store(path: Path, poisoned_slice: int = 1) -> Path:
    group = io.create_group(path)
    probabilities = ngff.create_image(group, (2, 3, 64, 64), "float32", name="probabilities",
                                      channel_names=["background", "foreground"])
    foreground = np.where(known_cells() > 0, 0.9, 0.1).astype(np.float32)
    probabilities[:] = np.repeat(np.stack([1 - foreground, foreground])[:, None], 3, axis=1)
    probabilities[:, poisoned_slice] = np.nan
    return path


def test_non_finite_probabilities_are_refused_within_seconds_naming_store_and_slice(tmp_path):
    # before the check, a watershed of NaN probabilities did not finish in minutes
    store = nan_prediction_store(tmp_path / "nan.zarr")
    result = subprocess.run(
        [sys.executable, "-m", "unetflow.steps.segment", str(store), str(tmp_path / "objects.zarr"), "--settings",
         '{"settings": "fixed", "method": "watershed", "seeds": "probability", "h": 0.1}', "--workers", "2"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "nan.zarr/0: slice 1 (class 1) holds 4096 non-finite probabilities" in result.stderr
    assert "retrain the model and rerun predict" in result.stderr
    assert not (tmp_path / "objects.zarr").exists() and not list(tmp_path.glob(".objects.zarr.tmp-*"))


# 3-D: the whole (z, y, x) volume as one segmentation

SETTINGS_3D = {"components": {"threshold": 0.5, "min_size": 0},
               "watershed distance": {"threshold": 0.5, "seeds": "distance", "h": 1.0, "min_size": 0},
               "watershed probability": {"threshold": 0.5, "seeds": "probability", "h": 0.05, "min_size": 0},
               # unmasked, the background would part into clusters of its own
               "mutex_watershed": {"bias": 0.5, "min_size": 10, "mask": 0.5}}


def tube_and_blob() -> np.ndarray:
    """A tube (disc of radius 6) through all 12 slices and, in slices 4-7, a blob above-left of it:
    per slice, the blob comes first in raster order there, the tube first elsewhere."""
    rows, columns = np.indices((32, 32))
    objects = np.zeros((12, 32, 32), np.uint32)
    objects[:, (rows - 20) ** 2 + (columns - 20) ** 2 <= 36] = 1
    objects[4:8, 2:8, 2:8] = 2
    return objects


def segment_each(volume: np.ndarray, method: str, options: dict) -> np.ndarray:
    return np.stack([segment(part, method, options) for part in volume])


def test_a_tube_through_z_is_one_object_over_the_volume():
    objects = tube_and_blob()
    probability = np.where(objects > 0, 0.9, 0.1)
    for name, options in SETTINGS_3D.items():
        found = segment(probability, name.split()[0], options | {"seeds": name.split()[-1]}, sampling=(1.0, 1.0, 1.0))
        assert found.dtype == np.uint32 and found.max() == 2, name
        assert len(np.unique(found[objects == 1])) == 1 and len(np.unique(found[objects == 2])) == 1, name
        assert adapted_rand_error(objects, found, ignore_labels=(0,))[0] == 0.0, name
    # slice by slice the tube's ID changes where the blob is: what 3-D segmentation is for
    per_slice = segment_each(probability, "watershed", SETTINGS_3D["watershed distance"])
    assert len(np.unique(per_slice[objects == 1])) == 2


def two_tubes_apart_by_a_membrane(gap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two square tubes through 10 slices, one voxel of membrane between them; ``gap``: the
    membrane is open over 3 x 3 voxels in slice 5."""
    objects = np.zeros((10, 24, 33), np.uint32)
    objects[:, 2:22, 2:16], objects[:, 2:22, 17:31] = 1, 2
    probability = np.where(objects > 0, 0.9, 0.1)
    if gap:
        probability[5, 10:13, 16] = 0.6
    return objects, probability


def oblique_halves() -> np.ndarray:
    """Two cells on either side of the membrane y - z = 12, one voxel thick: across it, voxels of the
    two touch along edges (z - 1, y + 1), never across a face."""
    z, y, _ = np.indices((16, 28, 20))
    return np.where(y - z < 12, 1, np.where(y - z > 12, 2, 0)).astype(np.uint32)


def test_two_tubes_touching_through_a_thin_membrane_stay_two():
    for objects in (two_tubes_apart_by_a_membrane(gap=False)[0], oblique_halves()):
        probability = np.where(objects > 0, 0.9, 0.1)
        for name, options in SETTINGS_3D.items():
            found = segment(probability, name.split()[0], options | {"seeds": name.split()[-1]},
                            sampling=(1.0, 1.0, 1.0))
            assert found.max() == 2 and adapted_rand_error(objects, found, ignore_labels=(0,))[0] == 0.0, name
    objects, probability = two_tubes_apart_by_a_membrane(gap=True)
    assert components(probability, threshold=0.5, min_size=0).max() == 1  # the gap joins them, in 3-D too
    for name in ("watershed distance", "mutex_watershed"):
        filled = segment(probability, name.split()[0], SETTINGS_3D[name], sampling=(1.0, 1.0, 1.0))
        assert filled.max() == 2 and adapted_rand_error(objects, filled, ignore_labels=(0,))[0] == 0.0, name


def test_distance_seeds_measure_in_x_voxels():
    # a slab 3 slices thick: 2 voxels to its faces in z; with slices 5 x voxels apart, 10 x voxels
    foreground = np.zeros((5, 24, 24))
    foreground[1:4, 2:22, 2:22] = 0.9
    options = {"threshold": 0.5, "seeds": "distance", "h": 3.0, "min_size": 0}
    assert segment(foreground, "watershed", options, sampling=(1.0, 1.0, 1.0)).max() == 0  # no maximum 3 high
    assert segment(foreground, "watershed", options, sampling=(5.0, 1.0, 1.0)).max() == 1
    assert VoxelSize(z=50, y=4, x=4, unit="nanometer").in_x_pixels() == (12.5, 1.0, 1.0)


def probability_store(path: Path, foreground: np.ndarray, voxel_size: VoxelSize) -> Path:
    group = io.create_group(path)
    probabilities = ngff.create_image(group, (2, *foreground.shape), "float32", voxel_size, name="probabilities",
                                      channel_names=["background", "foreground"])
    probabilities[:] = np.stack([1 - foreground, foreground]).astype(np.float32)
    return path


def test_the_segment_step_in_3d_numbers_objects_over_the_volume(tmp_path):
    objects = tube_and_blob()
    foreground = np.where(objects > 0, 0.9, 0.1)
    voxel_size = VoxelSize(z=8, y=4, x=4, unit="nanometer")
    store = probability_store(tmp_path / "predictions.zarr", foreground, voxel_size)
    options = {"settings": "fixed", "method": "watershed", "seeds": "distance", "h": 1.0}
    segment_step.main([str(store), str(tmp_path / "objects.zarr"), "--settings", json.dumps(options),
                       "--dims", "3"])
    written = io.open_objects(tmp_path / "objects.zarr")
    assert written.dtype == np.uint32 and written.shape == objects.shape
    assert ngff.voxel_size_of(io.open_store(tmp_path / "objects.zarr")) == voxel_size
    expected = segment(foreground.astype(np.float32), "watershed", {"threshold": 0.5, "seeds": "distance", "h": 1.0,
                                                                      "min_size": 0}, sampling=(2.0, 1.0, 1.0))
    assert np.array_equal(written[:], expected)
    assert len(np.unique(written[:][objects == 1])) == 1 and written[:].max() == 2
