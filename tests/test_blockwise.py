"""Images larger than memory, segmented block by block, against the image segmented in one piece
(the invariant stated in unetflow.blockwise)."""

import json

import numpy as np
import pytest
import zarr
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from unetflow import blockwise, io, parts
from unetflow.blocks import BlockGrid
from unetflow.methods.segmenters import block_settings, segment
from unetflow.steps import merge as merge_step
from unetflow.steps import segment as segment_step
from unetflow.stitching import face_pairs, object_numbers


def same_partition(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two label images split the voxels alike (object numbers may differ)."""
    pairs = np.unique(np.stack([first.ravel(), second.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(first)) == len(np.unique(second))


def off_a_one_to_one_match(first: np.ndarray, second: np.ndarray) -> int | None:
    """Voxels whose object in ``second`` is not the one that most of their ``first`` object's
    voxels are in; None where two objects of ``first`` have the same best match (not one to one)."""
    pairs, counts = np.unique(np.stack([first.ravel(), second.ravel()]), axis=1, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for label, other, count in zip(pairs[0], pairs[1], counts):
        if count > best.get(label, (0, 0))[1]:
            best[label] = (other, count)
    if len({other for other, _ in best.values()}) != len(best):
        return None
    return int(first.size - sum(count for _, count in best.values()))


def in_blocks(foreground: np.ndarray, method: str, options: dict, block_shape, halo, tmp_path,
              sampling=None) -> np.ndarray:
    """``foreground`` segmented block by block through the fragments store, into a Zarr array."""
    grid = BlockGrid(foreground.shape, block_shape, halo)
    target = zarr.create_array(str(tmp_path / "objects.zarr"), shape=foreground.shape, chunks=block_shape,
                               dtype=np.uint32, fill_value=0, overwrite=True)
    how = block_settings(method, options)

    def read(region):
        return foreground[region]

    blockwise.segment_image(read, lambda window, cut, region: segment(window, method, how.options, sampling=sampling,
                                                              cut_faces=cut), grid,
                            tmp_path / "fragments", target, rule=how.rule, min_size=how.min_size,
                            vote_threshold=how.vote_threshold)
    assert not (tmp_path / "fragments").exists()
    return target[:]


def blobs(shape, seed=0, count=40, radius=4.0) -> np.ndarray:
    """A foreground probability of random round cells."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (count, len(shape))) * np.array(shape)
    distance = ndimage.distance_transform_edt(np.ones(shape, bool) & ~_points(shape, centres))
    return np.clip(1.2 - distance / radius, 0, 1).astype(np.float32)


def _points(shape, centres) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(np.clip(centres.astype(int), 0, np.array(shape) - 1).T)] = True
    return mask


WATERSHED = {"method": "watershed", "threshold": 0.5, "seeds": "distance", "h": 1.0, "min_size": 0}
COMPONENTS = {"method": "components", "threshold": 0.5, "min_size": 20}


def settings_without_method(options: dict) -> tuple[str, dict]:
    options = dict(options)
    return options.pop("method"), options


def test_an_image_of_one_block_is_segmented_as_in_one_piece_with_the_same_numbers(tmp_path):
    foreground = blobs((20, 40, 40))
    method, options = settings_without_method(WATERSHED)
    whole = segment(foreground, method, options)
    assert np.array_equal(in_blocks(foreground, method, options, foreground.shape, (4, 4, 4), tmp_path), whole)


@pytest.mark.parametrize("block_shape, halo", [((8, 16, 16), (0, 0, 0)), ((7, 13, 11), (2, 3, 4)),
                                               ((20, 8, 40), (5, 5, 5))])
def test_components_in_blocks_are_the_whole_images_components(block_shape, halo, tmp_path):
    foreground = blobs((20, 40, 40), seed=1, count=60, radius=5.0)
    method, options = settings_without_method(COMPONENTS)
    whole = segment(foreground, method, options)
    blocks = in_blocks(foreground, method, options, block_shape, halo, tmp_path)
    assert same_partition(blocks, whole)
    assert whole.max() > 5 and blocks.max() == whole.max()  # min_size applied to whole objects: none cut in pieces
    assert set(np.unique(blocks)) == set(range(blocks.max() + 1))  # numbered 1..n


def tubes(shape, paths, radius=2.5) -> np.ndarray:
    """Foreground probability 1 inside tubes along polylines (lists of points), 0 outside."""
    inside = np.zeros(shape, bool)
    for path in paths:
        for start, stop in zip(path[:-1], path[1:]):
            for t in np.linspace(0, 1, 200):
                inside[tuple(np.round(np.add(start, t * np.subtract(stop, start))).astype(int))] = True
    return (ndimage.distance_transform_edt(~inside) <= radius).astype(np.float32)


SEEDED = {"threshold": 0.5, "seeds": "distance", "h": 1.0, "min_size": 0}


@pytest.mark.parametrize("method, options", [
    ("watershed", SEEDED), ("watershed", {**SEEDED, "mask": 0.3}), ("components", {"threshold": 0.5, "min_size": 0}),
    ("agglomeration", {**SEEDED, "h": 0.2, "merge": 0.5}), ("agglomeration", {**SEEDED, "h": 0.2, "merge": 0.5, "mask": 0.3}),
    ("mutex_watershed", {"threshold": 0.5, "bias": 0.5, "min_size": 10}),
    ("mutex_watershed", {"threshold": 0.5, "bias": 0.5, "min_size": 10, "mask": 0.3}),
])
def test_a_tube_crossing_block_faces_in_x_y_and_z_keeps_one_id(method, options, tmp_path):
    shape = (32, 48, 48)
    # one tube turning through all three axes, and a second, separate one beside it
    bent = [(3, 5, 5), (28, 5, 5), (28, 40, 5), (28, 40, 40)]
    straight = [(5, 20, 40), (5, 20, 10)]
    foreground = tubes(shape, [bent, straight])
    whole = segment(foreground, method, options)
    blocks = in_blocks(foreground, method, options, (8, 8, 8), (6, 6, 6), tmp_path)
    bent_ids = np.unique(blocks[tubes(shape, [bent], radius=1.0) > 0])
    straight_ids = np.unique(blocks[tubes(shape, [straight], radius=1.0) > 0])
    assert len(bent_ids) == 1 and len(straight_ids) == 1 and bent_ids[0] != straight_ids[0] and bent_ids[0] > 0
    interior = foreground >= 0.5  # the watershed floods the background from the seeds a block sees
    assert same_partition(blocks[interior], whole[interior])
    if options.get("mask"):
        assert not blocks[foreground < options["mask"]].any() and not whole[foreground < options["mask"]].any()


def test_face_pairs_join_components_where_they_touch_and_fragments_by_majority():
    lower = np.array([1, 1, 1, 1, 2, 2, 0, 3])
    upper = np.array([5, 5, 5, 6, 6, 6, 7, 0])
    touching = {tuple(pair) for pair in face_pairs(lower, upper, "components")}
    assert touching == {(1, 5), (1, 6), (2, 6)}
    # 1 meets 5 on 3 of its 4 voxels; 6 lies 2 of 3 on 2; 1-6 is one voxel of each: not a majority
    assert {tuple(pair) for pair in face_pairs(lower, upper, "overlap")} == {(1, 5), (2, 6)}


def test_object_numbers_follow_the_first_fragment_and_drop_small_objects():
    pairs = np.array([[1, 4], [4, 6], [2, 5]])
    assert object_numbers(6, pairs).tolist() == [0, 1, 2, 3, 1, 2, 1]
    sizes = np.array([0, 5, 5, 30, 5, 5, 5])  # objects: {1, 4, 6} 15 voxels, {2, 5} 10, {3} 30
    assert object_numbers(6, pairs, sizes=sizes, min_size=12).tolist() == [0, 1, 0, 2, 1, 0, 1]


def write_predictions(path, foreground: np.ndarray, chunks) -> None:
    group = io.create_group(path)
    array = group.create_array("0", shape=(2, *foreground.shape), chunks=(1, *chunks), dtype=np.float32, fill_value=0)
    array[1], array[0] = foreground, 1 - foreground


def run_segment(predictions, out, options: dict, blocks: dict, *extra: str) -> np.ndarray:
    segment_step.main([str(predictions), str(out), "--settings", json.dumps({"settings": "fixed", **options}),
                       "--blocks", json.dumps(blocks), "--dims", "3", "--workers", "2", *extra])
    return zarr.open_group(str(out), mode="r")["0"][:]


def test_parts_of_a_volume_give_the_segmentation_of_one_job(tmp_path):
    foreground = blobs((48, 32, 32), seed=3, count=50, radius=4.5)
    write_predictions(tmp_path / "predictions.zarr", foreground, (8, 16, 16))
    blocks = {"edge": 16, "halo": 16}
    whole_job = run_segment(tmp_path / "predictions.zarr", tmp_path / "one.zarr", WATERSHED, blocks)
    for part in (1, 2, 3):
        segment_step.main([str(tmp_path / "predictions.zarr"), str(tmp_path / "three.zarr"), "--settings",
                           json.dumps({"settings": "fixed", **WATERSHED}), "--blocks", json.dumps(blocks),
                           "--dims", "3", "--part", str(part), "--parts", "3"])
    assert not (tmp_path / "three.zarr").exists()
    merge_step.main([str(tmp_path / "three.zarr"), "--parts", "3", "--workers", "2"])
    assert np.array_equal(zarr.open_group(str(tmp_path / "three.zarr"), mode="r")["0"][:], whole_job)
    assert not parts.workspace(tmp_path / "three.zarr").exists()
    in_one_piece = run_segment(tmp_path / "predictions.zarr", tmp_path / "whole.zarr", WATERSHED, {"edge": 1000})
    interior = foreground >= WATERSHED["threshold"]
    assert same_partition(whole_job[interior], in_one_piece[interior])


def test_a_missing_part_is_named_and_nothing_is_written(tmp_path):
    write_predictions(tmp_path / "predictions.zarr", blobs((32, 16, 16)), (8, 16, 16))
    options = ["--settings", json.dumps({"settings": "fixed", **WATERSHED}), "--blocks", '{"edge": 8}', "--dims", "3"]
    segment_step.main([str(tmp_path / "predictions.zarr"), str(tmp_path / "out.zarr"), *options, "--part", "1",
                       "--parts", "2"])
    with pytest.raises(SystemExit):
        from unetflow import cli
        cli.run(merge_step.main, [str(tmp_path / "out.zarr"), "--parts", "2"])
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.slow
@pytest.mark.parametrize("seeds", ["tuned", "distance"])
def test_blocks_segment_the_3d_demo_as_the_whole_volume(seeds, demo3d_run, tmp_path):
    predictions = zarr.open_group(str(demo3d_run / "results/predictions/small3d/demo3d_test.zarr"), mode="r")["0"]
    chunks = (16, 16, 16)  # 3 x 6 x 6 blocks of the 48 x 96 x 96 volume
    rechunked = io.create_group(tmp_path / "predictions.zarr")
    rechunked.create_array("0", shape=predictions.shape, chunks=(1, *chunks), dtype=predictions.dtype, fill_value=0)
    rechunked["0"][:] = predictions[:]
    tuned = json.loads((demo3d_run / "results/tuning/small3d/segment.json").read_text())["settings"]
    options = tuned if seeds == "tuned" else {**WATERSHED, "h": 2.0}
    whole = run_segment(tmp_path / "predictions.zarr", tmp_path / "whole.zarr", options, {"edge": 1000})
    blocks = run_segment(tmp_path / "predictions.zarr", tmp_path / "blocks.zarr", options, {"edge": 16})
    # the same objects, one to one; voxels differ only where the watershed's priorities tie between
    # two seeds (the order of equal priorities follows the window): background flooded between cells,
    # and, where a low threshold lets two cells' interiors touch, the boundary inside that interior
    assert whole.max() > 50 and blocks.max() == whole.max()
    off = off_a_one_to_one_match(whole, blocks)
    assert off is not None and off <= 1e-4 * whole.size  # at most 44 of the 442,368 voxels
    assert adapted_rand_error(whole.astype(np.int64), blocks.astype(np.int64))[0] <= 1e-4
