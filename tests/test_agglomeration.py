"""Agglomeration of watershed fragments by mean boundary: the graph and the merging equal naive
references, and exact boundaries give back the segmentation they bound."""

import inspect
import itertools

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error

from unetflow.agglomeration import agglomerate, region_graph
from unetflow.config_checks import SEEDED_METHODS
from unetflow.methods.segmenters import SEGMENTERS, segment
from unetflow.synthetic import em_labels


def naive_edges(fragments: np.ndarray, boundary: np.ndarray) -> dict[tuple[int, int], list[float]]:
    """(lower, upper) -> [sum, count] of max(boundary) over face-neighbour pairs, voxel by voxel."""
    edges: dict[tuple[int, int], list[float]] = {}
    for index in itertools.product(*map(range, fragments.shape)):
        for axis in range(fragments.ndim):
            other = list(index)
            other[axis] += 1
            if other[axis] >= fragments.shape[axis]:
                continue
            a, b = int(fragments[index]), int(fragments[tuple(other)])
            if a and b and a != b:
                edge = edges.setdefault((min(a, b), max(a, b)), [0.0, 0])
                edge[0] += max(boundary[index], boundary[tuple(other)])
                edge[1] += 1
    return edges


def naive_agglomeration(fragments: np.ndarray, boundary: np.ndarray, stop: float) -> np.ndarray:
    """Merge the pair of lowest mean boundary, recomputing the graph of the merged image each time."""
    regions = fragments.copy()
    while True:
        edges = naive_edges(regions, boundary)
        if not edges:
            return regions
        (low, high), (total, count) = min(edges.items(), key=lambda item: item[1][0] / item[1][1])
        if total / count >= stop:
            return regions
        regions[regions == high] = low


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("shape", [(12, 14), (5, 6, 7)])
def test_the_region_graph_equals_a_voxel_by_voxel_count(shape):
    rng = np.random.default_rng(len(shape))
    fragments = rng.integers(0, 5, shape).astype(np.uint32)
    boundary = rng.random(shape)
    graph = region_graph(fragments, boundary)
    expected = naive_edges(fragments, boundary)
    assert [tuple(pair) for pair in graph.pairs.tolist()] == sorted(expected)
    assert graph.sums == pytest.approx([expected[key][0] for key in sorted(expected)])
    assert graph.counts.tolist() == [expected[key][1] for key in sorted(expected)]


@pytest.mark.parametrize("seed", range(5))
def test_merging_equals_a_naive_agglomeration(seed):
    rng = np.random.default_rng(seed)
    fragments = np.kron(rng.permutation(36).reshape(6, 6) + 1, np.ones((4, 4), int)).astype(np.uint32)
    boundary = rng.random(fragments.shape)
    stop = 0.65  # faces of 4 voxel pairs: mean of max of two uniform values is 2/3
    mapping = agglomerate(region_graph(fragments, boundary), stop)
    expected = naive_agglomeration(fragments, boundary, stop)
    assert same_partition(mapping[fragments], expected)
    assert 1 < len(np.unique(expected)) < 36  # some merged, not all
    assert same_partition(agglomerate(region_graph(fragments, boundary), 0.0)[fragments], fragments)


def test_from_exact_boundaries_the_agglomeration_gives_back_the_cells_a_low_seed_height_splits():
    truth = em_labels((128, 128), np.random.default_rng(1), cell_diameter=28.0).astype(np.uint32)
    foreground = (truth > 0).astype(np.float32)
    settings = {"threshold": 0.5, "seeds": "distance", "h": 0.05, "min_size": 0, "merge": 0.5}
    fragments = segment(foreground, "watershed", settings)
    merged = segment(foreground, "agglomeration", settings)
    assert len(np.unique(fragments)) > 1.5 * len(np.unique(truth))  # over-split
    assert adapted_rand_error(truth, merged)[0] == 0.0 < adapted_rand_error(truth, fragments)[0]
    assert len(np.unique(merged)) == len(np.unique(truth)) - 1  # one object per cell (the membrane flooded)


def test_the_seeded_methods_named_for_config_checks_are_those_that_take_seeds():
    takes_seeds = {name for name in SEGMENTERS if "seeds" in inspect.signature(SEGMENTERS.get(name)).parameters}
    assert takes_seeds == set(SEEDED_METHODS)
