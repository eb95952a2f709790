"""Agglomeration of over-segmented fragments by their mean boundary probability.

A watershed with low seeds' height splits every cell whose membrane the network left open,
but also cuts cells in several fragments. The fragments are the nodes of a region
adjacency graph; an edge joins two fragments that touch (face neighbours) and holds the sum
and count of the boundary probability over the voxel pairs across their shared face. The
pair of lowest *mean* boundary probability is merged first, the edges of the merged
fragment with each neighbour add up (their mean is the mean over the whole shared face),
and merging stops when the lowest mean reaches the stop value: the mean-affinity
agglomeration of GALA (Nunez-Iglesias et al. 2013) and elf/nifty's mean edge
agglomeration.

Written here, not taken from scikit-image (``skimage.graph.rag_boundary`` and
``merge_hierarchical``): those keep the graph in networkx and update it in Python node by
node, slow for the tens of thousands of fragments of a 3-D block; elf's agglomeration needs
nifty, which only conda carries. Here the graph is built with numpy in one pass per axis and the
merging is one heap walk over the edges.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

PAIR_BITS = 32  # fragment numbers are uint32: a pair is one uint64 key


@dataclass(frozen=True)
class RegionGraph:
    """Fragments 1..``nodes`` and the edges between touching ones: ``pairs`` (k, 2) with the lower
    number first, and per edge the ``sums`` and ``counts`` of the boundary over its face."""

    nodes: int
    pairs: np.ndarray
    sums: np.ndarray
    counts: np.ndarray


def region_graph(fragments: np.ndarray, boundary: np.ndarray) -> RegionGraph:
    """The region adjacency graph of ``fragments`` (0: background, no node) weighted by ``boundary``.

    Every pair of face neighbours in two different fragments adds, to their edge, the higher
    of the two voxels' boundary values: a face between fragments runs along the boundary's
    ridge, and of the two voxels that straddle it the higher one lies on the ridge.
    """
    keys, values = [], []
    for axis in range(fragments.ndim):
        low = tuple(slice(None, -1) if dim == axis else slice(None) for dim in range(fragments.ndim))
        high = tuple(slice(1, None) if dim == axis else slice(None) for dim in range(fragments.ndim))
        first, second = fragments[low], fragments[high]
        across = (first != second) & (first > 0) & (second > 0)
        lower = np.minimum(first[across], second[across]).astype(np.uint64)
        upper = np.maximum(first[across], second[across]).astype(np.uint64)
        keys.append((lower << np.uint64(PAIR_BITS)) | upper)
        values.append(np.maximum(boundary[low][across], boundary[high][across]).astype(np.float64))
    edges, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    sums = np.bincount(inverse, weights=np.concatenate(values), minlength=len(edges))
    counts = np.bincount(inverse, minlength=len(edges)).astype(np.int64)
    pairs = np.stack([edges >> np.uint64(PAIR_BITS), edges & np.uint64(2**PAIR_BITS - 1)], axis=1).astype(np.int64)
    return RegionGraph(int(fragments.max(initial=0)), pairs, sums, counts)


def agglomerate(graph: RegionGraph, stop: float) -> np.ndarray:
    """Merge touching fragments by mean boundary, lowest first, while it is below ``stop``.

    Returns
    -------
    np.ndarray
        Fragment number (0..nodes) -> its merged region's number (0 for 0): the lowest fragment
        number of the region, so the result does not depend on the merging's bookkeeping.
    """
    parent = np.arange(graph.nodes + 1)
    neighbours: dict[int, dict[int, list[float]]] = {node: {} for node in range(1, graph.nodes + 1)}
    heap = []
    for (first, second), total, count in zip(graph.pairs.tolist(), graph.sums.tolist(), graph.counts.tolist()):
        neighbours[first][second] = neighbours[second][first] = [total, count]
        heap.append((total / count, first, second))
    heapq.heapify(heap)
    while heap and heap[0][0] < stop:
        mean, first, second = heapq.heappop(heap)
        edge = neighbours[first].get(second) if parent[first] == first and parent[second] == second else None
        if edge is None or edge[0] / edge[1] != mean:
            continue  # an edge of a fragment merged since it was pushed
        kept, gone = (first, second) if len(neighbours[first]) >= len(neighbours[second]) else (second, first)
        parent[gone] = kept
        del neighbours[kept][gone]
        for other, (total, count) in neighbours.pop(gone).items():
            if other == kept:
                continue
            del neighbours[other][gone]
            joined = neighbours[kept].setdefault(other, [0.0, 0])
            joined[0] += total
            joined[1] += count
            neighbours[other][kept] = joined
            heapq.heappush(heap, (joined[0] / joined[1], *sorted((kept, other))))
    return lowest_member(parent)


def lowest_member(parent: np.ndarray) -> np.ndarray:
    """Each node's region as the lowest node number in it, from a forest of parent links."""
    roots = parent.copy()
    while True:  # path halving over the whole array until every node points at its root
        following = roots[roots]
        if np.array_equal(following, roots):
            break
        roots = following
    lowest = np.full(len(parent), len(parent), np.int64)
    np.minimum.at(lowest, roots, np.arange(len(parent)))
    return lowest[roots]
