"""Affinities and the mutex watershed: affinities from labels and from a probability map equal
pixel-by-pixel references, exact affinities give back the segmentation they come from, and the
mutex watershed keeps cells apart through a membrane hole that floods connected components."""

import itertools

import numpy as np
import pytest
from skimage.draw import disk
from skimage.metrics import adapted_rand_error

from unetflow.affinities import affinities_from_foreground, affinities_from_labels, offsets_for
from unetflow.mutex import mutex_segmentation
from unetflow.methods.metrics import object_scores
from unetflow.methods.segmenters import segment
from unetflow.synthetic import em_labels

MUTEX = {"method": "mutex_watershed", "bias": 0.5, "min_size": 0}
OFFSETS_2D = [(1, 0), (0, 1), (0, -2), (3, 1), (-2, -3)]
OFFSETS_3D = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 0, -1), (0, -3, 2)]


def inside(point, shape) -> bool:
    return all(0 <= p < n for p, n in zip(point, shape))


def naive_label_affinities(labels, offsets, ignore):
    affinities = np.zeros((len(offsets), *labels.shape), np.float32)
    valid = np.zeros(affinities.shape, bool)
    for channel, offset in enumerate(offsets):
        for u in itertools.product(*map(range, labels.shape)):
            v = tuple(np.add(u, offset))
            if not inside(v, labels.shape):
                continue
            valid[(channel, *u)] = labels[u] != ignore and labels[v] != ignore
            affinities[(channel, *u)] = labels[u] == labels[v] and labels[u] not in (0, ignore)
    return affinities, valid


def naive_line_minimum(foreground, offsets):
    affinities = np.zeros((len(offsets), *foreground.shape), np.float32)
    for channel, offset in enumerate(offsets):
        steps = max(map(abs, offset))
        for u in itertools.product(*map(range, foreground.shape)):
            line = [tuple(u[axis] + int(round(offset[axis] * t / steps)) for axis in range(len(u)))
                    for t in range(steps + 1)]
            if inside(line[-1], foreground.shape):
                affinities[(channel, *u)] = min(foreground[point] for point in line)
    return affinities


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("shape, offsets", [((9, 11), OFFSETS_2D), ((4, 6, 7), OFFSETS_3D)])
def test_affinities_from_labels_equal_a_pixel_by_pixel_reference(shape, offsets):
    labels = np.random.default_rng(len(shape)).integers(0, 4, shape)  # 0 background, 3 ignored
    affinities, valid = affinities_from_labels(labels, offsets, ignore=3)
    expected, expected_valid = naive_label_affinities(labels, offsets, ignore=3)
    assert np.array_equal(affinities, expected) and np.array_equal(valid, expected_valid)
    assert 0 < affinities.mean() < 1 and 0 < valid.mean() < 1


@pytest.mark.parametrize("shape, offsets", [((9, 11), OFFSETS_2D), ((4, 6, 7), OFFSETS_3D)])
def test_affinities_from_a_probability_map_are_the_lowest_probability_on_the_line(shape, offsets):
    foreground = np.random.default_rng(7).random(shape).astype(np.float32)
    expected = naive_line_minimum(foreground, offsets)
    assert np.array_equal(affinities_from_foreground(foreground, offsets), expected)


def test_offsets_start_with_face_neighbours_and_keep_their_physical_length_in_z():
    assert offsets_for(2)[:2] == [(1, 0), (0, 1)] and (27, -27) in offsets_for(2)
    anisotropic = offsets_for(3, (12.5, 1.0, 1.0))  # ssTEM: 50 nm sections, 4 nm pixels
    assert anisotropic[:3] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert [offset for offset in anisotropic if offset[0]] == [(1, 0, 0), (2, 0, 0)]  # 27 px / 12.5 -> 2
    assert len(set(anisotropic)) == len(anisotropic)


@pytest.mark.parametrize("bias", [0.3, 0.5, 1.0])
def test_the_mutex_watershed_gives_back_a_tiling_from_its_exact_affinities(bias):
    truth = np.kron(np.random.default_rng(0).permutation(30).reshape(5, 6) + 1, np.ones((9, 7), int))
    truth[20:30, 10:40] = 99  # a cell that is not a rectangle of the grid
    offsets = offsets_for(2)
    affinities, _ = affinities_from_labels(truth, offsets)
    clusters = mutex_segmentation(affinities, offsets, bias=bias)
    assert clusters.dtype == np.uint32 and clusters.min() == 1
    assert same_partition(clusters, truth)
    corner = truth[:20, :25]  # smaller than the longest offsets, which then link no pixels
    assert same_partition(mutex_segmentation(affinities[:, :20, :25], offsets, bias=bias), corner)


def test_from_exact_affinities_of_cells_with_membranes_every_cell_comes_back_and_membrane_is_left_alone():
    truth = em_labels((96, 96), np.random.default_rng(2), cell_diameter=24.0)
    offsets = offsets_for(2)
    affinities, _ = affinities_from_labels(truth, offsets)
    clusters = mutex_segmentation(affinities, offsets, bias=0.5)
    cells = truth > 0
    assert same_partition(clusters[cells], truth[cells])
    assert not clusters[~cells].any()  # a membrane pixel attracts nothing: a singleton, unlabelled


def test_the_mutex_watershed_segmenter_recovers_cells_from_a_perfect_probability_map():
    truth = em_labels((128, 128), np.random.default_rng(1), cell_diameter=28.0)
    objects = segment((truth > 0).astype(np.float32), "mutex_watershed", MUTEX)
    assert objects.dtype == np.uint32 and (objects > 0).all()  # mask 0: the membrane is filled in
    assert adapted_rand_error(truth, objects)[0] == 0.0
    assert len(np.unique(objects)) == len(np.unique(truth)) - 1


def test_a_hole_in_the_membrane_merges_components_but_not_the_mutex_watershed():
    foreground = np.ones((40, 61), np.float32)
    foreground[:, 30] = 0.0  # a vertical membrane between two cells ...
    foreground[18:21, 30] = 0.9  # ... open over three pixels
    components = segment(foreground, "components", {"threshold": 0.5, "min_size": 0})
    assert np.unique(components).tolist() == [0, 1]  # one object through the hole
    objects = segment(foreground, "mutex_watershed", {**MUTEX, "min_size": 10})
    left, right = np.unique(objects[:, :30]), np.unique(objects[:, 31:])
    assert len(left) == 1 and len(right) == 1 and left[0] != right[0]


def test_the_masked_mutex_watershed_leaves_the_background_of_sparse_nuclei():
    truth = np.zeros((96, 96), np.uint32)
    for number, centre in enumerate(((20, 20), (20, 70), (70, 45)), start=1):
        truth[disk(centre, 9, shape=truth.shape)] = number
    foreground = (truth > 0).astype(np.float32)
    flooded = segment(foreground, "mutex_watershed", MUTEX)
    assert object_scores(truth, flooded)["average_precision"] < 1.0  # unmasked, the background is an object
    objects = segment(foreground, "mutex_watershed", {**MUTEX, "mask": 0.5})
    assert not objects[truth == 0].any()
    assert object_scores(truth, objects)["average_precision"] == 1.0
