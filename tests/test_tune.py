"""The tune step: its candidates, its choice against a direct computation, and the segment
step using what it chose."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import zarr
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from unetflow import io, ngff, settings
from unetflow.affinities import Predicted, affinities_from_labels, offsets_for
from unetflow.errors import InputError
from unetflow.isbi_scores import segmentation_v_scores
from unetflow.methods.segmenters import segment
from unetflow.steps import segment as segment_step
from unetflow.steps import tune as tune_step
from unetflow.tuning import candidates, choose, sweep
from unetflow.synthetic import em_labels, generate_volume
from unetflow.voxel_size import VoxelSize

GRID = [{"method": ["watershed"], "seeds": ["probability"], "threshold": [0.3, 0.5, 0.7], "h": [0.02, 0.3]},
        {"method": ["components"], "threshold": [0.3, 0.5, 0.7]}]


def write_stores(folder, seed: int = 0, *, with_objects: bool = True) -> tuple:
    """A labelled data store of two cell slices and a blurred, noisy interior probability
    (``with_objects=False``: the same probabilities, ground truth of background only)."""
    rng = np.random.default_rng(seed)
    truth = np.stack([em_labels((96, 96), rng, cell_diameter=24.0) for _ in range(2)]).astype(np.uint32)
    interior = ndimage.gaussian_filter((truth > 0).astype(np.float64), (0, 1.5, 1.5))
    probability = np.clip(interior + rng.normal(0, 0.15, truth.shape), 0, 1).astype(np.float32)
    data = io.create_group(folder / "data.zarr")
    ngff.create_image(data, truth.shape, np.dtype(np.uint8), name="raw")[:] = 0
    ngff.create_label(data, "objects", truth.shape, np.dtype(np.uint32))[:] = truth if with_objects else 0
    ngff.create_label(data, "classes", truth.shape, np.dtype(np.uint8))[:] = truth > 0
    predictions = io.create_group(folder / "predictions.zarr")
    array = ngff.create_image(predictions, (2, *truth.shape), "float32", name="probabilities",
                              channel_names=["background", "foreground"])
    array[:] = np.stack([1 - probability, probability])
    return folder / "data.zarr", folder / "predictions.zarr", truth, probability


def test_candidates_cover_the_grid_once_each_in_order():
    trials = candidates(GRID, settings.section("segment"))
    assert len(trials) == 3 * 2 + 3
    assert [trial["method"] for trial in trials] == ["watershed"] * 6 + ["components"] * 3
    assert trials[0] == {"method": "watershed", "threshold": 0.3, "seeds": "probability", "h": 0.02, "min_size": 0,
                         "mask": 0, "merge": 0.5, "bias": 0.5, "affinities": "predicted"}
    # components take no seeds or h: differing only there, candidates are one
    assert len(candidates([{"method": ["components"], "h": [1.0, 2.0], "threshold": [0.5]}],
                          settings.section("segment"))) == 1


def test_a_grid_with_an_impossible_seed_height_is_refused():
    with pytest.raises(InputError, match=r"tune.grid\[0\].h is 2.0 with tune.grid\[0\].seeds: probability"):
        candidates([{"method": ["watershed"], "seeds": ["probability"], "h": [2.0]}], settings.section("segment"))


def test_the_choice_is_the_lowest_mean_adapted_rand_error_computed_directly(tmp_path):
    data, predictions, truth, probability = write_stores(tmp_path)
    trials = candidates(GRID, settings.section("segment"))
    table = sweep([data], [predictions], trials, metric="adapted_rand_error")
    direct = [np.mean([adapted_rand_error(truth[z], segment(probability[z], trial["method"], trial),
                                          ignore_labels=(0,))[0] for z in range(2)]) for trial in trials]
    pixel_errors = [np.mean((probability >= trial["threshold"]) != (truth > 0)) for trial in trials]
    assert table["score"].to_numpy() == pytest.approx(direct)
    assert table["pixel_error"].to_numpy() == pytest.approx(pixel_errors)
    best = min(range(len(trials)), key=lambda index: (direct[index] > min(direct) + 1e-12, pixel_errors[index], index))
    assert choose(table, tolerance=0.0) == best
    assert len(set(np.round(direct, 6))) > 3  # the grid matters on this data: the test can fail
    assert table.attrs["slices"] == 2


def test_by_v_rand_the_choice_is_the_highest_v_rand_of_the_objects_as_the_challenge_scores_them(tmp_path):
    data, predictions, truth, probability = write_stores(tmp_path)
    trials = candidates(GRID, settings.section("segment"))
    table = sweep([data], [predictions], trials, metric="v_rand")
    direct = [np.mean([segmentation_v_scores(segment(probability[z], trial["method"], trial), truth[z])
                       for z in range(2)], axis=0) for trial in trials]
    assert table["objects_v_rand"].to_numpy() == pytest.approx([rand for rand, _ in direct])
    assert table["objects_v_info"].to_numpy() == pytest.approx([info for _, info in direct])
    assert table["score"].to_numpy() == pytest.approx([1 - rand for rand, _ in direct])
    assert choose(table, tolerance=0.0) == int(np.argmax([rand for rand, _ in direct]))
    assert len({round(rand, 6) for rand, _ in direct}) > 3  # the grid matters on this data: the test can fail
    by_info = sweep([data], [predictions], trials, metric="v_info")
    assert by_info["score"].to_numpy() == pytest.approx([1 - info for _, info in direct])


def test_the_challenges_slice_scores_are_refused_as_the_metric_of_volumes(tmp_path):
    data, predictions, _, _ = write_stores(tmp_path)
    with pytest.raises(InputError, match="tune.metric is v_rand, the ISBI 2012 challenge's score of 2-D slices"):
        sweep([data], [predictions], candidates(GRID, settings.section("segment")), metric="v_rand", dims=3)


def test_near_ties_go_to_the_lowest_pixel_error_then_to_the_first_candidate():
    table = pd.DataFrame({"score": [0.3, 0.1, 0.1005, 0.1, 0.2], "pixel_error": [0.01, 0.08, 0.05, 0.08, 0.01]})
    assert choose(table, tolerance=0.0) == 1  # exact tie of rows 1 and 3: same pixel error, the first
    assert choose(table, tolerance=0.001) == 2  # 0.1005 is within 0.001: its pixel error is the lowest
    assert choose(table, tolerance=0.15) == 4


def test_the_tune_step_writes_its_choice_and_segment_uses_it(tmp_path):
    data, predictions, truth, probability = write_stores(tmp_path)
    grid = json.dumps({"grid": GRID})
    run = [sys.executable, "-m", "unetflow.steps.tune", "--data", str(data), "--predictions", str(predictions),
           "--settings", grid, "--out", str(tmp_path / "segment.json"), "--table", str(tmp_path / "sweep.csv")]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    choice = json.loads((tmp_path / "segment.json").read_text())
    sweep_table = pd.read_csv(tmp_path / "sweep.csv")
    best = choose(sweep_table, settings.section("tune")["tolerance"])
    assert sweep_table["chosen"].sum() == 1 and sweep_table.at[best, "chosen"]
    assert choice["settings"] == candidates(GRID, settings.section("segment"))[best]
    assert choice["score"] == pytest.approx(sweep_table.at[best, "score"]) and choice["candidates"] == 9
    assert sweep_table[sweep_table["method"] == "components"][["seeds", "h"]].isna().all(axis=None)  # not taken
    subprocess.run([sys.executable, "-m", "unetflow.steps.segment", str(predictions), str(tmp_path / "objects.zarr"),
                    "--settings", json.dumps({"settings": "tuned"}), "--tuned", str(tmp_path / "segment.json")],
                   check=True, capture_output=True, timeout=120)
    objects = zarr.open_group(str(tmp_path / "objects.zarr"), mode="r")["0"]
    used = dict(objects.attrs["unetflow"])
    assert used == choice["settings"]
    expected = segment(probability[1], choice["settings"]["method"], choice["settings"])
    assert np.array_equal(objects[1], expected)


def test_segment_with_tuned_settings_but_no_choice_says_what_to_do(tmp_path):
    _, predictions, _, _ = write_stores(tmp_path)
    result = subprocess.run([sys.executable, "-m", "unetflow.steps.segment", str(predictions),
                             str(tmp_path / "objects.zarr"), "--settings", json.dumps({"settings": "tuned"})],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "segment.settings is tuned, but no tuned settings were given" in result.stderr
    assert not (tmp_path / "objects.zarr").exists()


def test_tuning_data_without_objects_is_refused(tmp_path):
    data, predictions, _, _ = write_stores(tmp_path, with_objects=False)
    with pytest.raises(InputError, match="no slice of .*data.zarr has ground-truth objects.*segment.settings: fixed"):
        sweep([data], [predictions], candidates(GRID, settings.section("segment")), metric="adapted_rand_error")


# 3-D: candidates segment and are scored on whole volumes

GRID_3D = [{"method": ["watershed"], "seeds": ["distance"], "threshold": [0.5], "h": [1.0, 3.0]},
           {"method": ["components"], "threshold": [0.3, 0.6]}]


def write_volume_stores(folder, seed: int = 0) -> tuple:
    """A labelled synthetic volume (16 x 48 x 48, voxels 2 x 1 x 1) and a blurred, noisy interior
    probability of it."""
    rng = np.random.default_rng(seed)
    truth = generate_volume(16, 48, seed=seed)[2].astype(np.uint32)
    interior = ndimage.gaussian_filter((truth > 0).astype(np.float64), 0.7)
    probability = np.clip(interior + rng.normal(0, 0.1, truth.shape), 0, 1).astype(np.float32)
    voxel_size = VoxelSize(z=2, y=1, x=1, unit="micrometer")
    data = io.create_group(folder / "data.zarr")
    ngff.create_image(data, truth.shape, np.dtype(np.uint8), voxel_size, name="raw")[:] = 0
    ngff.create_label(data, "objects", truth.shape, np.dtype(np.uint32), voxel_size)[:] = truth
    ngff.create_label(data, "classes", truth.shape, np.dtype(np.uint8), voxel_size)[:] = truth > 0
    predictions = io.create_group(folder / "predictions.zarr")
    array = ngff.create_image(predictions, (2, *truth.shape), "float32", voxel_size, name="probabilities",
                              channel_names=["background", "foreground"])
    array[:] = np.stack([1 - probability, probability])
    return folder / "data.zarr", folder / "predictions.zarr", truth, probability


def test_in_3d_the_choice_is_the_lowest_adapted_rand_error_of_the_whole_volume(tmp_path):
    data, predictions, truth, probability = write_volume_stores(tmp_path)
    trials = candidates(GRID_3D, settings.section("segment"))
    table = sweep([data], [predictions], trials, metric="adapted_rand_error", dims=3, workers=2)
    direct = [adapted_rand_error(truth, segment(probability, trial["method"], trial, sampling=(2.0, 1.0, 1.0)),
                                 ignore_labels=(0,))[0] for trial in trials]
    assert table["score"].to_numpy() == pytest.approx(direct)
    assert len(set(np.round(direct, 6))) == len(trials)  # every candidate scores differently: the test can fail
    assert table.attrs["volumes"] == 1 and table.attrs["slices"] == 16
    per_slice = sweep([data], [predictions], trials, metric="adapted_rand_error")
    assert not np.allclose(per_slice["score"], table["score"])  # slice means are another score


def test_the_tune_and_segment_steps_in_3d_agree(tmp_path):
    data, predictions, truth, probability = write_volume_stores(tmp_path)
    tune_step.main(["--data", str(data), "--predictions", str(predictions), "--settings",
                    json.dumps({"grid": GRID_3D}), "--out", str(tmp_path / "segment.json"), "--table",
                    str(tmp_path / "sweep.csv"), "--dims", "3"])
    choice = json.loads((tmp_path / "segment.json").read_text())
    assert (choice["dims"], choice["volumes"], choice["slices"], choice["candidates"]) == (3, 1, 16, 4)
    segment_step.main([str(predictions), str(tmp_path / "objects.zarr"), "--settings",
                       json.dumps({"settings": "tuned"}), "--tuned", str(tmp_path / "segment.json"), "--dims", "3"])
    written = io.open_objects(tmp_path / "objects.zarr")[:]
    expected = segment(probability, choice["settings"]["method"], choice["settings"], sampling=(2.0, 1.0, 1.0))
    assert np.array_equal(written, expected)
    assert adapted_rand_error(truth, written, ignore_labels=(0,))[0] == pytest.approx(choice["score"])


def test_in_3d_a_volume_larger_than_a_block_is_tuned_block_by_block_with_the_whole_volumes_scores(tmp_path):
    data, predictions, truth, probability = write_volume_stores(tmp_path)
    trials = candidates(GRID_3D, settings.section("segment"))
    whole = sweep([data], [predictions], trials, metric="adapted_rand_error", dims=3, workers=2)
    rechunked = io.create_group(tmp_path / "small-chunks.zarr")
    rechunked.attrs.update(zarr.open_group(str(predictions), mode="r").attrs.asdict())
    array = rechunked.create_array("0", shape=(2, *truth.shape), chunks=(1, 8, 16, 16), dtype=np.float32,
                                   fill_value=0)
    array[:] = np.stack([1 - probability, probability])
    options = {"edge": 16, "halo": 24}  # 2 x 3 x 3 blocks
    blocks = sweep([data], [tmp_path / "small-chunks.zarr"], trials, metric="adapted_rand_error", dims=3, workers=2,
                   blocks=options, workspace=tmp_path / "workspace")
    assert not (tmp_path / "workspace").exists()
    for index, trial in enumerate(trials):  # each candidate scored as the segment step segments it
        out = tmp_path / f"objects-{index}.zarr"
        segment_step.main([str(tmp_path / "small-chunks.zarr"), str(out), "--settings",
                           json.dumps({"settings": "fixed", **trial}), "--blocks", json.dumps(options), "--dims", "3"])
        direct = adapted_rand_error(truth, io.open_objects(out)[:], ignore_labels=(0,))[0]
        assert abs(blocks["score"][index] - direct) < 1e-9
        if trial["method"] == "components":  # exact in blocks: the whole volume's scores
            assert abs(blocks["score"][index] - whole["score"][index]) < 1e-9
    np.testing.assert_allclose(blocks["pixel_error"], whole["pixel_error"], rtol=0, atol=1e-9)


def test_a_volumes_predicted_affinities_are_read_once_and_only_for_a_candidate_that_uses_them(tmp_path, monkeypatch):
    data, predictions, truth, probability = write_volume_stores(tmp_path)
    offsets = offsets_for(3, (2.0, 1.0, 1.0))
    exact = affinities_from_labels(truth, offsets)[0].astype(np.float32)
    stored = np.concatenate([np.stack([1 - probability, probability]), exact])
    group = zarr.open_group(str(predictions), mode="r+")
    del group["0"]
    ngff.create_image(group, stored.shape, "float32", VoxelSize(z=2, y=1, x=1, unit="micrometer"),
                      name="probabilities", channel_names=[f"channel{index}" for index in range(len(stored))],
                      attributes={"num_classes": 2, "affinity_offsets": offsets})[:] = stored
    reads = []
    read = io.affinity_region
    monkeypatch.setattr(io, "affinity_region", lambda *args: reads.append(1) or read(*args))
    watershed = candidates([GRID_3D[0]], settings.section("segment"))
    sweep([data], [predictions], watershed, metric="adapted_rand_error", dims=3, workers=2)
    assert reads == []
    mutex = candidates([{"method": ["mutex_watershed"], "bias": [0.3, 0.6], "min_size": [0]}], settings.section("segment"))
    table = sweep([data], [predictions], mutex, metric="adapted_rand_error", dims=3, workers=2)
    assert reads == [1]
    direct = [adapted_rand_error(truth, segment(probability, "mutex_watershed", trial, sampling=(2.0, 1.0, 1.0),
                                                predicted=Predicted(exact, offsets)), ignore_labels=(0,))[0]
              for trial in mutex]
    assert table["score"].to_numpy() == pytest.approx(direct) and max(direct) < 0.01  # exact affinities: exact cells
