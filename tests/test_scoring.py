"""Scores of images larger than memory, counted block by block, equal those of the whole image."""

import numpy as np
import pytest
import zarr
from skimage.metrics import adapted_rand_error, variation_of_information

from unetflow import io
from unetflow.evaluation import UNSCORED
from unetflow.methods.metrics import object_scores, table_scores
from unetflow.scoring import Confusion, Contingency
from unetflow.steps.evaluate import evaluate

from test_evaluate import write_case


def random_labels(shape, objects, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, objects, shape).astype(np.uint32)


def test_a_table_added_up_block_by_block_is_the_whole_images_and_gives_skimages_scores():
    truth, objects = random_labels((16, 30, 40), 12, 0), random_labels((16, 30, 40), 20, 1)
    table = Contingency()
    for z in range(0, 16, 5):
        for y in range(0, 30, 7):
            table.add(truth[z:z + 5, y:y + 7], objects[z:z + 5, y:y + 7])
    blockwise, whole = table_scores(table), object_scores(truth, objects)
    assert blockwise == whole  # integer counts: the same table, bit for bit
    error, precision, recall = adapted_rand_error(truth, objects, ignore_labels=(0,))
    split, merge = variation_of_information(truth, objects, ignore_labels=(0,))
    assert abs(blockwise["adapted_rand_error"] - error) < 1e-9 and abs(blockwise["adapted_rand_recall"] - recall) < 1e-9
    assert abs(blockwise["vi_split"] - split) < 1e-9 and abs(blockwise["vi_merge"] - merge) < 1e-9


def test_confusion_counts_add_up():
    rng = np.random.default_rng(2)
    predicted, truth = rng.random((50, 60)) > 0.4, rng.random((50, 60)) > 0.6
    parts = Confusion.of(predicted[:20], truth[:20]) + Confusion.of(predicted[20:], truth[20:])
    assert parts == Confusion.of(predicted, truth)
    assert parts.total == predicted.size and parts.true_positive == np.count_nonzero(predicted & truth)


def cells(shape, seed) -> np.ndarray:
    """Ground-truth objects: boxes of random IDs separated by one-voxel membranes."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.uint32)
    for corner in np.ndindex(*(max(1, edge // 6) for edge in shape)):
        region = tuple(slice(6 * index, 6 * index + 5) for index in corner)
        truth[region] = rng.integers(1, 1000)
    return truth


def with_small_chunks(path, chunks) -> None:
    """Rewrite a store's level 0 with ``chunks`` (the evaluation's blocks are whole chunks)."""
    group = zarr.open_group(str(path), mode="r+")
    values, attributes = group["0"][:], dict(group["0"].attrs)
    del group["0"]
    array = group.create_array("0", shape=values.shape, chunks=chunks, dtype=values.dtype, fill_value=0,
                               config=io.ARRAY_CONFIG)
    array[:], array.attrs["unetflow"] = values, attributes["unetflow"]


@pytest.mark.parametrize("dims", [2, 3])
def test_an_image_scored_block_by_block_scores_as_the_whole_image(dims, tmp_path):
    shape = (12, 40, 36) if dims == 3 else (3, 100, 90)
    truth = cells(shape, 0)
    rng = np.random.default_rng(1)
    probability = np.clip((truth > 0) * 0.8 + rng.normal(0, 0.2, shape), 0, 1).astype(np.float32)
    objects = truth.copy()
    objects[:, :20, :12] = 7  # a merge, and a split across blocks
    objects[:, 21:, 15:] *= 3
    stores = write_case(tmp_path, truth, probability, objects)
    whole = evaluate(**stores, dims=dims)
    with_small_chunks(stores["segmentation"], (4, 8, 16) if dims == 3 else (1, 8, 16))
    blocks = evaluate(**stores, dims=dims, blocks={"edge": 8, "plane_edge": 64})
    assert "block by block" in blocks.iloc[0]["note"] and np.isnan(blocks.iloc[0]["v_rand"])
    assert np.isnan(blocks.iloc[0]["objects_v_rand"]) and not np.isnan(whole.iloc[0]["objects_v_rand"])
    compared = [column for column in whole.columns if column not in ("note", "slice", "v_rand_threshold",
                                                                      "v_info_threshold", *UNSCORED)]
    for column in compared:
        np.testing.assert_allclose(blocks[column].to_numpy(float), whole[column].to_numpy(float), rtol=0, atol=1e-9,
                                   err_msg=column)
    assert list(blocks["slice"]) == list(whole["slice"])
