import subprocess
import sys
from pathlib import Path

import numpy as np
from skimage.metrics import adapted_rand_error

from unetflow import io, ngff
from unetflow.methods.segmenters import components, watershed_fill


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
