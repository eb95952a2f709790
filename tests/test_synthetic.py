import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.measure import regionprops
from skimage.metrics import adapted_rand_error

from unetflow import synthetic
from unetflow.errors import InputError
from unetflow.steps import demo_data


def test_same_seed_gives_identical_stacks():
    first = synthetic.generate_stack(2, 96, seed=3)
    second = synthetic.generate_stack(2, 96, seed=3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_other_seed_or_split_gives_other_stacks():
    base = synthetic.generate_stack(1, 96, seed=3)[0]
    assert not np.array_equal(base, synthetic.generate_stack(1, 96, seed=4)[0])
    assert not np.array_equal(base, synthetic.generate_stack(1, 96, seed=3, split="test")[0])


def test_slice_does_not_depend_on_stack_length():
    short = synthetic.generate_stack(1, 96, seed=0)[0]
    long = synthetic.generate_stack(3, 96, seed=0)[0]
    np.testing.assert_array_equal(short[0], long[0])


def test_em_labels_are_isbi_like_and_agree_with_instances():
    images, binary, instances = synthetic.generate_stack(2, 256, seed=0)
    assert images.dtype == np.uint8 and binary.dtype == np.uint8
    assert set(np.unique(binary)) == {0, 255}
    np.testing.assert_array_equal(binary == 255, instances > 0)
    for index in range(2):
        relabelled = connected_components(binary[index] == 255, connectivity=1)
        assert relabelled.max() == instances[index].max() > 20


def test_membranes_are_dark_where_the_labels_say():
    images, binary, _ = synthetic.generate_stack(3, 256, seed=1)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = True
    interior_core = ndimage.binary_erosion(binary == 255, structure=in_plane, iterations=3)
    assert images[binary == 0].mean() < images[interior_core].mean() - 60


def test_membrane_width_varies_between_one_and_six_pixels():
    _, binary, _ = synthetic.generate_stack(1, 256, seed=0)
    membrane = binary[0] == 0
    half_width = ndimage.distance_transform_edt(membrane)[membrane]
    assert np.percentile(half_width, 99) <= 3.5  # membranes up to ~6 px across (junctions wider)
    assert np.percentile(half_width, 90) >= 2.0  # a good share are 4-6 px wide
    opened = ndimage.binary_opening(membrane, structure=np.ones((2, 2)))
    assert np.count_nonzero(membrane & ~opened) > 500  # and many are 1 px wide


def test_touching_mode_has_cells_that_touch():
    images, binary, instances = synthetic.generate_stack(1, 192, seed=0, mode="touching")
    objects = instances[0]
    right = objects[:, :-1], objects[:, 1:]
    touching = (right[0] > 0) & (right[1] > 0) & (right[0] != right[1])
    assert np.count_nonzero(touching) > 20
    assert 0.2 < np.mean(objects > 0) < 0.8
    assert images[0][objects > 0].mean() > images[0][objects == 0].mean() + 60


# 3-D volumes

def test_volume_cells_are_each_one_connected_object_running_through_many_slices():
    images, binary, instances = synthetic.generate_volume(32, 64, seed=0)
    assert images.shape == binary.shape == instances.shape == (32, 64, 64)
    assert images.dtype == np.uint8 and binary.dtype == np.uint8 and instances.dtype == np.uint16
    np.testing.assert_array_equal(binary == 255, instances > 0)
    assert set(np.unique(binary)) == {0, 255}
    # relabelling the interior 6-connected gives back the objects one to one: each label is one
    # component, and no two labels touch across a face
    relabelled = connected_components(instances > 0, connectivity=1)
    assert relabelled.max() == instances.max() > 30
    assert adapted_rand_error(instances, relabelled, ignore_labels=(0,))[0] == 0.0
    extents = [box[3] - box[0] for box in (region.bbox for region in regionprops(instances))]
    assert min(extents) >= 2 and np.median(extents) >= 12  # cells run through z


def test_volume_cells_are_about_a_dozen_voxels_across_with_membranes_one_or_two_thick():
    images, binary, instances = synthetic.generate_volume(32, 64, seed=1)
    depth = ndimage.distance_transform_edt(instances > 0)
    assert 4 <= np.percentile(depth, 99) <= 8  # half a cell's width, in voxels
    membrane = binary == 0
    assert 0.15 < membrane.mean() < 0.35  # about 1.5 voxels of membrane around cells 12 across
    across = ndimage.distance_transform_edt(membrane)[membrane]  # to the nearest interior voxel
    assert np.percentile(across, 99) <= 1.5  # nearly every membrane voxel touches a cell
    assert np.mean(across == 1) > 0.85  # most of them across a face
    thick = ndimage.binary_opening(membrane, structure=np.ones((3, 3, 3)))
    assert np.count_nonzero(thick) < 0.03 * np.count_nonzero(membrane)  # 3 thick only where cells meet
    interior_core = ndimage.binary_erosion(binary == 255, iterations=2)
    assert images[membrane].mean() < images[interior_core].mean() - 50


def test_same_seed_gives_the_same_volume_and_splits_differ():
    first, second = synthetic.generate_volume(8, 48, seed=3), synthetic.generate_volume(8, 48, seed=3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], synthetic.generate_volume(8, 48, seed=3, split="test")[2])
    assert not np.array_equal(first[2], synthetic.generate_volume(8, 48, seed=4)[2])


def test_demo_data_in_3d_writes_a_train_and_a_test_volume(tmp_path):
    demo_data.main(["--out-dir", str(tmp_path), "--dims", "3", "--depth", "12", "--size", "64", "--seed", "2"])
    written = {path.name: tifffile.imread(path) for path in tmp_path.glob("*.tif")}
    assert sorted(written) == sorted(f"{split}-{kind}.tif" for split in ("train", "test")
                                     for kind in ("volume", "labels", "instances"))
    assert all(stack.shape == (12, 64, 64) for stack in written.values())
    np.testing.assert_array_equal(written["train-instances.tif"], synthetic.generate_volume(12, 64, seed=2)[2])
    assert not np.array_equal(written["train-volume.tif"], written["test-volume.tif"])
    with pytest.raises(InputError, match="--mode touching makes 2-D slices only"):
        demo_data.main(["--out-dir", str(tmp_path), "--dims", "3", "--mode", "touching"])
