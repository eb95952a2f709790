import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import zarr
from skimage.metrics import adapted_rand_error, variation_of_information

from unetflow import io, ngff
from unetflow.methods.metrics import object_scores, pixel_scores
from unetflow.scoring import Confusion
from unetflow.steps import evaluate as evaluate_step
from unetflow.steps.evaluate import evaluate
from unetflow.steps import report as report_step
from unetflow.steps.report import VOLUME_SECTION, methods_table, metrics_table, volume_table
from unetflow.errors import InputError
from unetflow.isbi_scores import (best_pixel_error, best_scores, contingency, interior_counts, segment_interior,
                                  segmentation_v_scores, slice_scores, thinned_segments, v_info, v_rand)


def two_cells() -> np.ndarray:
    truth = np.zeros((20, 21), np.uint32)
    truth[:, :10], truth[:, 11:] = 1, 2  # membrane (0) in column 10
    return truth


def test_perfect_segmentation_scores_one():
    truth = two_cells()
    joint = contingency(truth, truth)
    assert v_rand(joint) == pytest.approx((1.0, 1.0, 1.0))
    assert v_info(joint) == pytest.approx((1.0, 1.0, 1.0))


def test_a_merge_lowers_only_the_merge_scores():
    truth = two_cells()
    merged = np.ones_like(truth)
    rand, split, merge = v_rand(contingency(merged, truth))
    # p = (1/2, 1/2) in one segment: sum p^2 = 1/2, sum s^2 = 1, sum t^2 = 1/2
    assert (split, merge) == pytest.approx((1.0, 0.5))
    assert rand == pytest.approx(2 * 0.5 / (1 + 0.5))
    info, info_split, info_merge = v_info(contingency(merged, truth))
    assert info_split == pytest.approx(1.0) and info_merge == pytest.approx(0.0) and info == pytest.approx(0.0)


def test_a_split_lowers_only_the_split_scores():
    truth = two_cells()
    split_image = truth.copy()
    split_image[10:, :10] = 3  # cell 1 cut in two halves
    rand, split, merge = v_rand(contingency(split_image, truth))
    # p = (1/4, 1/4, 1/2): sum p^2 = 3/8 = sum s^2; sum t^2 = 1/2
    assert (split, merge) == pytest.approx((0.75, 1.0))
    info, info_split, info_merge = v_info(contingency(split_image, truth))
    assert info_merge == pytest.approx(1.0) and info_split < 1.0


def test_thinning_gives_border_pixels_to_segments_and_keeps_them_apart():
    truth = two_cells()
    probability = np.where(truth > 0, 0.9, 0.1)
    probability[:, 9:12] = 0.1  # a 3-px wide predicted membrane
    segments = thinned_segments(probability, 0.5)
    assert segments.min() > 0 and segments.max() == 2
    assert v_rand(contingency(segments, truth))[0] == pytest.approx(1.0)


def test_the_best_threshold_of_the_sweep_is_taken():
    truth = two_cells()
    probability = np.where(truth > 0, 0.9, 0.1)
    probability[5, 10] = 0.6  # a gap in the membrane: merges at thresholds below 0.6
    scores = slice_scores(probability, truth)
    assert scores[5, 0] < 1.0 and scores[6, 0] == pytest.approx(1.0)  # thresholds 0.5 and 0.6
    best = best_scores([scores])
    assert best["v_rand"] == pytest.approx(1.0) and best["v_rand_threshold"] >= 0.6


def test_a_segmentation_is_scored_by_its_borders():
    truth = two_cells()
    filled = np.where(np.arange(21) <= 10, 1, 2)[None].repeat(20, axis=0).astype(np.uint32)  # membrane given to 1
    interior = segment_interior(filled)
    assert interior[:, 10].sum() == 0 and interior[:, 11].sum() == 0 and interior[:, [9, 12]].all()  # both sides
    assert segmentation_v_scores(filled, truth) == pytest.approx((1.0, 1.0))
    assert segmentation_v_scores(truth, truth) == pytest.approx((1.0, 1.0))  # background (0) is border
    assert segmentation_v_scores(np.ones_like(truth), truth) == pytest.approx((2 * 0.5 / 1.5, 0.0))  # the merge above
    halves = filled.copy()
    halves[10:, :11] = 3  # cell 1 cut in two: the split above, up to the pixel the border moves
    rand, info = segmentation_v_scores(halves, truth)
    assert rand == pytest.approx(2 * (3 / 8) / (3 / 8 + 1 / 2), abs=0.03) and info < 1.0


def test_segmentation_v_rand_is_that_of_its_objects_up_to_their_borders():
    # (of connected objects: the challenge relabels the interior's components, so the parts of an
    # object that do not touch count as objects of their own)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:96, :96]
    centres = rng.uniform(0, 96, size=(12, 2))
    nearest = np.argmin([(yy - cy) ** 2 + (xx - cx) ** 2 for cy, cx in centres], axis=0).astype(np.uint32) + 1
    truth = nearest.copy()
    truth[segment_interior(nearest) == 0] = 0  # membranes along the cells' borders
    neighbour = nearest[:, 1:][(nearest[:, :-1] == 1) & (nearest[:, 1:] != 1)][0]
    wrong = np.where(nearest == neighbour, 1, nearest)  # one merge of two touching cells
    for segments in (nearest, wrong):
        assert segmentation_v_scores(segments, truth)[0] == pytest.approx(v_rand(contingency(segments, truth))[0], abs=0.01)
    assert segmentation_v_scores(wrong, truth)[0] < segmentation_v_scores(nearest, truth)[0] == pytest.approx(1.0)


def test_object_and_pixel_scores():
    truth = two_cells()
    found = object_scores(truth, truth)
    assert found["adapted_rand_error"] == pytest.approx(0.0)
    assert found["vi_split"] == pytest.approx(0.0) and found["vi_merge"] == pytest.approx(0.0)
    merged = object_scores(truth, np.ones_like(truth))
    assert merged["vi_merge"] > 0 and merged["vi_split"] == pytest.approx(0.0)
    pixels = pixel_scores(Confusion.of(truth > 0, truth > 0))
    assert pixels == pytest.approx({"pixel_error_at_threshold": 0.0, "foreground_iou": 1.0, "foreground_dice": 1.0})


def test_non_finite_probabilities_are_refused_within_seconds(tmp_path):
    truth = np.repeat(two_cells()[None], 2, axis=0)
    stores = write_case(tmp_path, truth, (truth > 0).astype(np.float32), truth)
    zarr.open_group(str(stores["predictions"]), mode="r+")["0"][1, 0, 3, 4] = np.inf
    result = subprocess.run(
        [sys.executable, "-m", "unetflow.steps.evaluate", "--data", str(tmp_path / "data.zarr"), "--predictions",
         str(tmp_path / "predictions.zarr"), "--segmentation", str(tmp_path / "segmentation.zarr"),
         "--out", str(tmp_path / "scores.csv")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    message = "predictions.zarr/0: slice 0 (class 1) holds 1 non-finite probabilities"
    assert message in result.stderr
    assert not (tmp_path / "scores.csv").exists()


def write_case(tmp_path, truth: np.ndarray, probability: np.ndarray, objects: np.ndarray,
               threshold: float = 0.5) -> dict[str, str]:
    data = io.create_group(tmp_path / "data.zarr")
    ngff.create_image(data, truth.shape, np.dtype(np.uint8), name="raw")[:] = 0
    ngff.create_label(data, "objects", truth.shape, np.dtype(np.uint32))[:] = truth
    ngff.create_label(data, "classes", truth.shape, np.dtype(np.uint8))[:] = truth > 0
    segmentation = io.create_group(tmp_path / "segmentation.zarr")
    ngff.create_image(segmentation, truth.shape, np.dtype(np.uint32), name="segmentation", downsampling="nearest",
                      attributes={"threshold": threshold})[:] = objects
    predictions = io.create_group(tmp_path / "predictions.zarr")
    array = ngff.create_image(predictions, (2, *truth.shape), "float32", name="probabilities",
                              channel_names=["background", "foreground"])
    array[:] = np.stack([1 - probability, probability]).astype(np.float32)
    return {"data": tmp_path / "data.zarr", "predictions": tmp_path / "predictions.zarr",
            "segmentation": tmp_path / "segmentation.zarr"}


def test_a_slice_without_ground_truth_objects_gets_pixel_scores_and_a_note(tmp_path):
    truth = np.stack([two_cells(), np.zeros_like(two_cells())])
    probability = (truth > 0).astype(np.float32)
    probability[1, :2] = 1.0  # a false positive on the empty slice: pixel error 2/20
    table = evaluate(**write_case(tmp_path, truth, probability, truth))
    empty, overall = table.iloc[1], table.iloc[-1]
    assert empty["pixel_error_at_threshold"] == pytest.approx(2 / 20) and empty["foreground_iou"] == 0.0
    assert np.isnan(empty["adapted_rand_error"]) and np.isnan(empty["v_rand"]) and np.isnan(empty["objects_v_rand"])
    assert "no ground-truth objects" in empty["note"]
    assert overall["pixel_error_at_threshold"] == pytest.approx(1 / 20)  # both slices
    assert overall["adapted_rand_error"] == pytest.approx(0.0) and overall["v_rand"] == pytest.approx(1.0)
    assert overall["objects_v_rand"] == pytest.approx(1.0) and overall["objects_v_info"] == pytest.approx(1.0)
    assert overall["note"] == "1 of 2 slices have objects"


def test_the_probabilities_and_the_objects_each_get_their_v_rand(tmp_path):
    truth = np.stack([two_cells(), two_cells()])
    merged = np.ones_like(truth)
    merged[1] = truth[1]
    table = evaluate(**write_case(tmp_path, truth, (truth > 0).astype(np.float32), merged))
    assert table["v_rand"].tolist() == pytest.approx([1.0, 1.0, 1.0])  # the map separates the cells
    assert table["objects_v_rand"].tolist() == pytest.approx([2 / 3, 1.0, (2 / 3 + 1) / 2])  # slices, their mean


def test_the_three_pixel_errors_are_each_what_their_name_says(tmp_path):
    truth = np.stack([two_cells(), two_cells()])
    probability = np.where(truth > 0, 0.9, 0.0).astype(np.float32)
    probability[:, :, 10] = 0.4  # the membrane column: interior at thresholds below 0.4
    probability[0, :5, :3] = 0.45  # 15 interior pixels that only thresholds below 0.45 call interior
    table = evaluate(**write_case(tmp_path, truth, probability, truth, threshold=0.42))
    first, overall = table.iloc[0], table.iloc[-1]
    pixels = truth[0].size
    assert first["threshold"] == 0.42
    assert first["pixel_error_at_0.5"] == pytest.approx(15 / pixels)  # the 0.45 pixels fall out at 0.5
    assert first["pixel_error_at_threshold"] == pytest.approx(0.0)  # 0.42 gets both right
    # the challenge's form, thresholds 0.0, 0.1, ..., 0.9 with p > t: 0.4 and 0.45 split at t = 0.4,
    # where every pixel is right on both slices
    assert first["isbi_pixel_error"] == pytest.approx(0.0) and first["isbi_pixel_error_threshold"] == 0.4
    assert overall["isbi_pixel_error"] == pytest.approx(0.0) and overall["isbi_pixel_error_threshold"] == 0.4
    # at threshold 0.9 nothing is interior (p > 0.9 is false): F = 0, so the best is elsewhere; at 0.3
    # the membrane column (20 px per slice) is called interior: F = 2 tp / (2 tp + fp)
    counts = interior_counts(probability[0], truth[0])
    interior = np.count_nonzero(truth[0])
    assert tuple(counts[3]) == (interior, 20, 0) and tuple(counts[9]) == (0, 0, interior)
    assert best_pixel_error(counts[[3]], (0.3,))["isbi_pixel_error"] == pytest.approx(1 - 2 * interior / (2 * interior + 20))


def test_evaluation_needs_the_segmentation_threshold(tmp_path):
    truth = np.stack([two_cells()])
    stores = write_case(tmp_path, truth, (truth > 0).astype(np.float32), truth)
    del zarr.open_group(str(stores["segmentation"]), mode="r+")["0"].attrs["unetflow"]
    with pytest.raises(InputError, match="records no segmentation threshold.*rerun the segment rule"):
        evaluate(**stores)


# 3-D: the whole volume scored as one segmentation

def tube_split_across_z() -> tuple[np.ndarray, np.ndarray]:
    """Ground truth: one tube (20 x 10 voxels a slice, membrane around it) through 6 slices; the
    segmentation gives its top and bottom three slices two IDs. Each slice sees one object."""
    truth = np.zeros((6, 20, 21), np.uint32)
    truth[:, :, :10] = 1
    objects = truth.copy()
    objects[3:] *= 7
    return truth, objects


def test_identical_volumes_score_zero_and_the_volume_scores_are_skimages():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, (6, 12, 12)).astype(np.uint32)
    assert object_scores(truth, truth) == pytest.approx(
        {"adapted_rand_error": 0.0, "adapted_rand_precision": 1.0, "adapted_rand_recall": 1.0, "vi_split": 0.0,
         "vi_merge": 0.0, "average_precision": 1.0, "f1": 1.0})
    objects = rng.integers(0, 7, truth.shape).astype(np.uint32)
    scores = object_scores(truth, objects)
    assert scores["adapted_rand_error"] == pytest.approx(adapted_rand_error(truth, objects, ignore_labels=(0,))[0])
    assert (scores["vi_split"], scores["vi_merge"]) == pytest.approx(
        tuple(variation_of_information(truth, objects, ignore_labels=(0,))))


def test_a_split_across_z_scores_zero_per_slice_but_not_as_a_volume(tmp_path):
    truth, objects = tube_split_across_z()
    table = evaluate(**write_case(tmp_path, truth, (truth > 0).astype(np.float32), objects), dims=3)
    assert list(table["slice"]) == [*map(str, range(6)), "all", "volume"]
    overall, volume = table.iloc[-2], table.iloc[-1]
    assert (table.iloc[:-1]["adapted_rand_error"] == 0.0).all() and overall["vi_split"] == pytest.approx(0.0)
    # n voxels in halves: sum n_ij^2 - n = n^2/2 - n, sum a_i^2 - n = n^2 - n, sum b_j^2 - n = n^2/2 - n,
    # so the error 1 - 2 (n^2/2 - n) / (3 n^2 / 2 - 2 n) = n / (3 n - 4); two equal halves: 1 bit of split
    voxels = np.count_nonzero(truth)
    assert volume["adapted_rand_error"] == pytest.approx(voxels / (3 * voxels - 4))
    assert volume["adapted_rand_recall"] == pytest.approx(1.0)
    assert volume["vi_split"] == pytest.approx(1.0) and volume["vi_merge"] == pytest.approx(0.0)
    assert volume["threshold"] == 0.5 and "whole volume" in volume["note"]
    assert np.isnan(volume["pixel_error_at_threshold"]) and np.isnan(volume["v_rand"])
    assert list(evaluate(**write_case(tmp_path, truth, (truth > 0).astype(np.float32), objects))["slice"])[-1] == "all"


def test_a_volume_without_ground_truth_objects_gets_no_volume_scores(tmp_path):
    truth = np.zeros((2, 20, 21), np.uint32)
    volume = evaluate(**write_case(tmp_path, truth, np.zeros(truth.shape, np.float32), truth), dims=3).iloc[-1]
    assert volume["slice"] == "volume" and np.isnan(volume["adapted_rand_error"]) and np.isnan(volume["vi_split"])
    assert "no ground-truth objects" in volume["note"]


def test_the_evaluate_step_with_dims_3_writes_the_volume_row_and_the_report_shows_it(tmp_path):
    truth, objects = tube_split_across_z()
    stores = write_case(tmp_path, truth, (truth > 0).astype(np.float32), objects)
    results = tmp_path / "results"
    for dims, model in (("3", "volumes"), ("2", "slices")):
        evaluate_step.main(["--data", str(stores["data"]), "--predictions", str(stores["predictions"]),
                            "--segmentation", str(stores["segmentation"]), "--out",
                            str(results / "evaluation" / model / "d.csv"), "--model", model, "--dataset", "d",
                            "--dims", dims])
    written = pd.read_csv(results / "evaluation" / "volumes" / "d.csv", dtype={"slice": str})
    assert list(written["slice"])[-2:] == ["all", "volume"]
    volumes = volume_table([results / "evaluation" / model / "d.csv" for model in ("volumes", "slices")])
    assert list(volumes.columns) == ["model", "dataset", "threshold", "adapted_rand_error", "vi_split", "vi_merge",
                                      "average_precision", "f1"]
    assert len(volumes) == 1 and volumes.iloc[0]["model"] == "volumes"
    assert volumes.iloc[0]["vi_split"] == pytest.approx(1.0)
    assert len(metrics_table([results / "evaluation" / "volumes" / "d.csv"])) == 1  # the dataset row only
    for models, shown in ((["volumes", "slices"], True), (["slices"], False)):
        report_step.main(["--results", str(results), "--out-dir", str(tmp_path / "report"), "--models", *models,
                          "--evaluated", "d"])
        text, html = ((tmp_path / "report" / name).read_text() for name in ("metrics.md", "metrics.html"))
        assert (VOLUME_SECTION in text, VOLUME_SECTION in html) == (shown, shown)
        row = f"| volumes | d | 0.5000 | {volumes.iloc[0]['adapted_rand_error']:.4f} | 1.0000 | 0.0000 |"
        assert (row in text) == shown


def test_the_report_shows_each_methods_best_candidate_of_the_sweep_side_by_side(tmp_path):
    sweep = pd.DataFrame([
        {"chosen": False, "method": "watershed", "threshold": 0.3, "seeds": "probability", "h": 0.1, "min_size": 0,
         "mask": 0.0, "merge": np.nan, "adapted_rand_error": 0.05, "score": 0.05},
        {"chosen": True, "method": "watershed", "threshold": 0.5, "seeds": "probability", "h": 0.2, "min_size": 0,
         "mask": 0.0, "merge": np.nan, "adapted_rand_error": 0.03, "objects_v_rand": 0.97, "score": 0.03},
        {"chosen": False, "method": "agglomeration", "threshold": 0.5, "seeds": "probability", "h": 0.05,
         "min_size": 0, "mask": 0.0, "merge": 0.4, "adapted_rand_error": 0.04, "score": 0.04},
        {"chosen": False, "method": "components", "threshold": 0.5, "seeds": np.nan, "h": np.nan, "min_size": 20,
         "mask": np.nan, "merge": np.nan, "adapted_rand_error": 0.2, "score": 0.2},
    ])
    sweep.to_csv(tmp_path / "sweep.csv", index=False)
    table = methods_table({"m": tmp_path / "sweep.csv"})
    assert list(table["method"]) == ["watershed", "agglomeration", "components"]
    assert list(table["adapted_rand_error"]) == [0.03, 0.04, 0.2] and list(table["chosen"]) == [True, False, False]
    assert table.iloc[0]["objects_v_rand"] == 0.97 and table.iloc[1:]["objects_v_rand"].isna().all()  # where swept
    assert table.iloc[1]["its best settings"] == "threshold 0.5, seeds probability, h 0.05, min_size 0, mask 0.0, merge 0.4"
    assert table.iloc[2]["its best settings"] == "threshold 0.5, min_size 20"
