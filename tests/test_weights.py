import json

import dask.array as da
import numpy as np
import pytest
import zarr
from PIL import Image
from scipy import ndimage
from skimage.measure import label as connected_components

from unetflow import io, ngff
from unetflow.errors import InputError
from unetflow.synthetic import generate_stack
from unetflow.steps.weights import main
from unetflow.weight_maps import (
    border_cutoff,
    class_weights,
    naive_weight_map,
    slice_class_weights,
    weight_map,
    weight_map_stack,
    weight_map_volume,
)
from unetflow.voxel_size import VoxelSize

BALANCED = np.array([1.0, 1.0])
ANISOTROPIC = VoxelSize(z=100.0, y=40.0, x=40.0, unit="nanometer")  # spacing (2.5, 1, 1) in x pixels


def touching_slices(count=2, size=160):
    _, _, instances = generate_stack(count, size, seed=5, mode="touching")
    objects = instances.astype(np.uint32)
    classes = (objects > 0).astype(np.uint8)
    return classes, objects


def touching_cells_volume(shape=(16, 40, 40), count=14, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Classes and objects of a volume of cells around random seeds, up to 8 voxels from their
    seed, with a one-voxel border (class 0) where a cell touches one of a higher label."""
    rng = np.random.default_rng(seed)
    points = tuple(rng.integers(0, length, count) for length in shape)
    not_seed = np.ones(shape, dtype=bool)
    not_seed[points] = False
    distance, nearest = ndimage.distance_transform_edt(not_seed, return_indices=True)
    seed_labels = np.zeros(shape, dtype=np.uint32)
    seed_labels[points] = np.arange(1, count + 1)
    objects = np.where(distance <= 8, seed_labels[tuple(nearest)], 0).astype(np.uint32)
    border = ndimage.maximum_filter(objects, size=3) > objects
    classes = ((objects > 0) & ~border).astype(np.uint8)
    return classes, objects


def write_data_store(path, classes: np.ndarray, objects: np.ndarray, voxel_size: VoxelSize):
    """A labelled data.zarr of ``classes`` and ``objects`` (and a blank image), as ingest writes it."""
    data = io.create_group(path)
    ngff.create_image(data, classes.shape, np.dtype(np.uint8), voxel_size, name="raw")[:] = 0
    ngff.create_label(data, "objects", objects.shape, np.dtype(np.uint32), voxel_size)[:] = objects
    ngff.create_label(data, "classes", classes.shape, np.dtype(np.uint8), voxel_size)[:] = classes
    return path


def test_equals_the_naive_reference_on_touching_cells():
    classes, objects = touching_slices()
    for index in range(2):
        weights = class_weights(np.bincount(classes[index].ravel()))
        ours = weight_map(classes[index], objects[index], class_weight=weights, w0=10, sigma=5)
        reference = naive_weight_map(classes[index], objects[index], class_weight=weights, w0=10, sigma=5)
        np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)


def test_equals_the_naive_reference_on_isbi_slices(isbi_dir):
    for index in (0, 11, 21):
        labels = np.asarray(Image.open(isbi_dir / "train" / "label" / f"{index:02d}.png"))
        classes = (labels == 255).astype(np.uint8)
        objects = connected_components(classes, connectivity=1).astype(np.uint32)
        weights = class_weights(np.bincount(classes.ravel()))
        ours = weight_map(classes, objects, class_weight=weights, w0=10, sigma=5)
        reference = naive_weight_map(classes, objects, class_weight=weights, w0=10, sigma=5)
        np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)


def test_middle_of_a_gap_between_two_squares_follows_the_formula():
    classes = np.zeros((30, 40), dtype=np.uint8)
    classes[10:20, 5:15] = 1  # square A: columns 5..14
    classes[10:20, 21:31] = 1  # square B: columns 21..30, gap 15..20
    objects = connected_components(classes, connectivity=1).astype(np.uint32)
    weights = weight_map(classes, objects, class_weight=np.array([0.5, 2.0]), w0=10, sigma=5)
    # pixel (15, 17): 3 px from A's column 14 and 4 px from B's column 21
    assert weights[15, 17] == pytest.approx(0.5 + 10 * np.exp(-((3 + 4) ** 2) / (2 * 5**2)), abs=1e-6)
    assert weights[15, 10] == pytest.approx(2.0)  # foreground: w_c only


@pytest.mark.parametrize("count", [0, 1, 40])
def test_finite_for_zero_one_or_many_objects(count):
    classes = np.zeros((64, 64), dtype=np.uint8)
    for index in range(count):
        row, col = divmod(index, 8)
        classes[row * 8 : row * 8 + 5, col * 8 : col * 8 + 5] = 1
    objects = connected_components(classes, connectivity=1).astype(np.uint32)
    weights = weight_map(classes, objects, class_weight=class_weights(np.bincount(classes.ravel(), minlength=2)),
                         w0=10, sigma=5)
    assert np.all(np.isfinite(weights))
    if count < 2:
        np.testing.assert_allclose(weights, class_weights(np.bincount(classes.ravel(), minlength=2))[classes])
    else:
        assert weights.max() > 5  # gaps between neighbours are up-weighted


def test_class_weights_average_to_one_and_balance_classes():
    counts = np.array([300, 100, 0, 600])
    weights = class_weights(counts)
    assert weights[2] == 0
    assert np.sum(counts * weights) == pytest.approx(counts.sum())
    totals = counts * weights
    np.testing.assert_allclose(totals[counts > 0], totals[0])


def test_per_slice_class_weights_differ_by_slice():
    classes = np.zeros((2, 10, 10), dtype=np.uint8)
    classes[0, :5] = 1
    classes[1, :2] = 1
    per_slice = slice_class_weights(da.from_array(classes, chunks=(1, 10, 10)), 2, per_slice=True)
    dataset = slice_class_weights(da.from_array(classes, chunks=(1, 10, 10)), 2, per_slice=False)
    np.testing.assert_allclose(per_slice[0], [1.0, 1.0])
    np.testing.assert_allclose(per_slice[1], class_weights(np.array([80, 20])))
    np.testing.assert_allclose(dataset[0], dataset[1])
    np.testing.assert_allclose(dataset[0], class_weights(np.array([130, 70])))


def test_tiled_equals_untiled():
    classes, objects = touching_slices(2, 200)
    weights = np.stack([class_weights(np.array([1, 1]))] * 2)
    whole = weight_map_stack(
        da.from_array(classes, chunks=(1, 200, 200)), da.from_array(objects, chunks=(1, 200, 200)),
        slice_weights=weights, w0=10, sigma=5,
    ).compute()
    tiled = weight_map_stack(
        da.from_array(classes, chunks=(1, 64, 48)), da.from_array(objects, chunks=(1, 64, 48)),
        slice_weights=weights, w0=10, sigma=5,
    ).compute(scheduler="threads")
    np.testing.assert_array_equal(tiled, whole)
    assert border_cutoff(10, 5) < 64 / 2  # the halo fits the tiles used here


def test_sigma_and_w0_shape_the_border_term():
    classes = np.zeros((20, 30), dtype=np.uint8)
    classes[:, :10] = classes[:, 16:] = 1
    objects = connected_components(classes, connectivity=1).astype(np.uint32)
    narrow = weight_map(classes, objects, class_weight=BALANCED, w0=10, sigma=2)
    wide = weight_map(classes, objects, class_weight=BALANCED, w0=10, sigma=8)
    double = weight_map(classes, objects, class_weight=BALANCED, w0=20, sigma=8)
    assert narrow[10, 12] < wide[10, 12]
    np.testing.assert_allclose(double[10, 10:16] - 1, 2 * (wide[10, 10:16] - 1), rtol=1e-6)


@pytest.mark.parametrize("spacing", [None, (2.5, 1.0, 1.0)])
def test_volume_equals_the_naive_3d_reference(spacing):
    classes, objects = touching_cells_volume()
    weights = class_weights(np.bincount(classes.ravel()))
    ours = weight_map(classes, objects, class_weight=weights, w0=10, sigma=5, spacing=spacing)
    reference = naive_weight_map(classes, objects, class_weight=weights, w0=10, sigma=5, spacing=spacing)
    assert ours.shape == classes.shape and ours.max() > weights.max() + 5  # borders are up-weighted
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)


def test_volume_blocks_equal_the_whole_volume():
    classes, objects = touching_cells_volume((20, 48, 48))
    weights = class_weights(np.bincount(classes.ravel()))
    spacing = (2.5, 1.0, 1.0)
    whole = weight_map(classes, objects, class_weight=weights, w0=10, sigma=2, spacing=spacing)
    blocks = weight_map_volume(
        da.from_array(classes, chunks=(1, 24, 24)), da.from_array(objects, chunks=(1, 24, 24)),
        class_weight=weights, w0=10, sigma=2, spacing=spacing,
    )
    assert blocks.numblocks == (3, 2, 2)  # z-halo of 6 slices: three blocks of at least 6
    np.testing.assert_array_equal(blocks.compute(scheduler="threads"), whole)


def test_z_anisotropy_widens_the_gap_between_objects_stacked_in_z():
    classes = np.zeros((9, 6, 6), dtype=np.uint8)
    classes[:2] = classes[6:] = 1  # two slabs, slices 2..5 between them
    objects = connected_components(classes, connectivity=1).astype(np.uint32)
    isotropic = weight_map(classes, objects, class_weight=BALANCED, w0=10, sigma=5)
    thick = weight_map(classes, objects, class_weight=BALANCED, w0=10, sigma=5, spacing=(2.5, 1.0, 1.0))
    # slice 3: 2 slices above the first slab, 3 below the second: d1 + d2 = 5 slices
    assert isotropic[3, 2, 2] == pytest.approx(1 + 10 * np.exp(-(5**2) / (2 * 5**2)), abs=1e-6)
    assert thick[3, 2, 2] == pytest.approx(1 + 10 * np.exp(-((5 * 2.5) ** 2) / (2 * 5**2)), abs=1e-6)


def test_weights_step_in_3d_equals_the_whole_volume_map(tmp_path):
    classes, objects = touching_cells_volume((20, 40, 40))
    data = write_data_store(tmp_path / "data.zarr", classes, objects, ANISOTROPIC)
    main([str(data), str(tmp_path / "weights.zarr"), "--dims", "3", "--settings", json.dumps({"sigma": 2}),
          "--preview", str(tmp_path / "preview.png"), "--scheduler", "threads", "--workers", "2"])
    stored = zarr.open_group(str(tmp_path / "weights.zarr"), mode="r")[io.LEVEL0]
    whole = weight_map(classes, objects, class_weight=class_weights(np.bincount(classes.ravel())), w0=10,
                       sigma=2, spacing=(2.5, 1.0, 1.0))
    np.testing.assert_array_equal(stored[:], whole)
    assert stored.dtype == np.float32 and stored.chunks == (20, 40, 40)  # a volume's store: cubes
    assert stored.attrs["unetflow"]["dims"] == 3 and stored.attrs["unetflow"]["spacing"] == [2.5, 1.0, 1.0]
    assert (tmp_path / "preview.png").stat().st_size > 0


def test_3d_weights_block_by_block_in_every_axis_equal_the_whole_volume_map(tmp_path):
    """Labels in chunks of 8 x 16 x 16 voxels: 3 x 3 x 3 blocks (each made at least as long as the
    halo), each with a halo of the border term's cutoff, where w0 exp(-(d1 + d2)^2 / 2 sigma^2) < w0 2^-24: farther objects change no float32
    weight, and the whole map is cut off there as well, so the maps are equal."""
    classes, objects = touching_cells_volume((20, 40, 40), count=30)
    data = io.create_group(tmp_path / "data.zarr")
    ngff.create_image(data, classes.shape, np.dtype(np.uint8), ANISOTROPIC, name="raw")[:] = 0
    for name, values in (("objects", objects), ("classes", classes)):
        labels = data.require_group("labels").create_group(name)
        ngff.create_image(labels, values.shape, values.dtype, ANISOTROPIC, name=name, downsampling="nearest")
        del labels["0"]
        labels.create_array("0", shape=values.shape, chunks=(8, 16, 16), dtype=values.dtype, fill_value=0,
                            config=io.ARRAY_CONFIG)[:] = values
    main([str(tmp_path / "data.zarr"), str(tmp_path / "weights.zarr"), "--dims", "3", "--settings",
          json.dumps({"sigma": 2}), "--workers", "2"])
    stored = zarr.open_group(str(tmp_path / "weights.zarr"), mode="r")[io.LEVEL0][:]
    whole = weight_map(classes, objects, class_weight=class_weights(np.bincount(classes.ravel())), w0=10, sigma=2,
                       spacing=(2.5, 1.0, 1.0))
    assert np.abs(stored - whole).max() <= 10 * 2.0**-24


def test_slice_class_weights_are_refused_for_3d_weight_maps(tmp_path):
    classes, objects = touching_cells_volume((4, 16, 16))
    data = write_data_store(tmp_path / "data.zarr", classes, objects, ANISOTROPIC)
    with pytest.raises(InputError, match="weights.class_weights is 'slice'.*set weights.class_weights to dataset"):
        main([str(data), str(tmp_path / "weights.zarr"), "--dims", "3",
              "--settings", json.dumps({"class_weights": "slice"})])
    assert not (tmp_path / "weights.zarr").exists()
