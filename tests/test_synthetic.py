import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components

from unetflow import synthetic


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
