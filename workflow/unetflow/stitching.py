"""One set of object IDs over an image segmented block by block.

Each block is segmented on its own (with a halo of context) into *fragments*, numbered
1..n within the block; fragment ``i`` of block ``b`` has the global number
``offset[b] + i``. Where two blocks meet, the two one-voxel layers that touch across the
face decide which fragments are one object, by the segmentation method's rule:

``components``
    fragments that touch across the face are one object. For connected components of a
    mask this is exact: the stitched objects are the whole image's components, whatever
    the blocks (as elf's and cluster_tools' blockwise labelling).
``overlap``
    the lower block's view of the upper block's first layer (it lies in the lower block's
    halo) is laid on the upper block's fragments there: a fragment joins the fragment of the
    other view that covers more than half of its own cross-section (either way round), as
    overlap stitching does (elf, daisy). Only the layer's *interior* voxels vote (foreground
    at or above the method's threshold): a watershed floods the background from whatever
    seeds a block sees, so two blocks may give one stretch of background to different
    cells, while they agree on the cells. A fragment without interior voxels (a cell's
    flooded membrane beyond the face, a flooded stretch of background) joins at most one
    fragment, the one that covers most of its cross-section on any face (all voxels voting,
    majority again), so it can never join two cells.

The fragments to join are the edges of a graph whose connected components
(``scipy.sparse.csgraph``) are the objects, numbered 1, 2, ... in the order of their
first fragment, i.e. by block, then by the numbering inside the block: with one block,
the objects are the block's, with the block's numbers.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

RULES = ("components", "overlap")
MAJORITY = 0.5


OUTSIDE = -1  # in a lower view: an interior voxel that belongs to none of the lower block's fragments


def face_pairs(lower: np.ndarray, upper: np.ndarray, rule: str) -> np.ndarray:
    """The (k, 2) pairs of fragments that are one object, from the two views of a face's layer.

    ``lower`` and ``upper`` hold global fragment numbers, 0 for voxels that do not vote (the
    background); ``lower`` may also hold :data:`OUTSIDE`. ``components``: every pair that meets
    joins; ``overlap``: the majority rule of the module's notes.
    """
    lower, upper = np.ravel(lower).astype(np.int64), np.ravel(upper).astype(np.int64)
    both = (lower > 0) & (upper > 0)
    pairs, counts = np.unique(np.stack([lower[both], upper[both]], axis=1), axis=0, return_counts=True)
    if rule == "components" or not len(pairs):
        return pairs.reshape(-1, 2)
    if rule != "overlap":
        raise ValueError(f"unknown stitching rule {rule!r}; choose one of {RULES}")
    voting = lower != 0
    lower_sections = dict(zip(*np.unique(lower[lower > 0], return_counts=True)))
    upper_sections = dict(zip(*np.unique(upper[voting & (upper > 0)], return_counts=True)))
    section_lower = np.array([lower_sections[fragment] for fragment in pairs[:, 0]])
    section_upper = np.array([upper_sections[fragment] for fragment in pairs[:, 1]])
    majority = (counts > MAJORITY * section_lower) | (counts > MAJORITY * section_upper)
    return pairs[majority]


def majority_partners(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(k, 3) rows (fragment, partner, overlap) where ``partner``, across the face, covers more than
    half of ``fragment``'s cross-section, every voxel voting (both directions)."""
    lower, upper = np.ravel(lower).astype(np.int64), np.ravel(upper).astype(np.int64)
    both = (lower > 0) & (upper > 0)
    pairs, counts = np.unique(np.stack([lower[both], upper[both]], axis=1), axis=0, return_counts=True)
    if not len(pairs):
        return np.zeros((0, 3), np.int64)
    rows = []
    for side, (mine, theirs) in ((lower, (0, 1)), (upper, (1, 0))):
        sections = dict(zip(*np.unique(side[side > 0], return_counts=True)))
        section = np.array([sections[fragment] for fragment in pairs[:, mine]])
        chosen = counts > MAJORITY * section
        rows.append(np.stack([pairs[chosen, mine], pairs[chosen, theirs], counts[chosen]], axis=1))
    return np.concatenate(rows)


def background_joins(candidates: np.ndarray, has_interior: np.ndarray) -> np.ndarray:
    """(k, 2) joins of the fragments without interior voxels: each to the partner of its
    :func:`majority_partners` rows with the largest overlap (the lower number on a tie)."""
    rows = np.asarray(candidates, np.int64).reshape(-1, 3)
    rows = rows[~has_interior[rows[:, 0]]]
    if not len(rows):
        return np.zeros((0, 2), np.int64)
    rows = rows[np.lexsort((rows[:, 1], -rows[:, 2], rows[:, 0]))]  # by fragment, largest overlap first
    first = np.concatenate([[True], rows[1:, 0] != rows[:-1, 0]])
    return rows[first, :2]


def object_numbers(fragment_count: int, pairs: np.ndarray, *, sizes: np.ndarray | None = None,
                   min_size: int = 0) -> np.ndarray:
    """Fragment number (0..``fragment_count``) -> object number (0 = background).

    Parameters
    ----------
    fragment_count
        Fragments are numbered 1..fragment_count; 0 is the background.
    pairs
        (k, 2) fragments that are one object.
    sizes
        Voxels of each fragment (length fragment_count + 1), for ``min_size``.
    min_size
        Objects of fewer voxels (summed over their fragments) become background.

    Returns
    -------
    np.ndarray
        int64 lookup of length fragment_count + 1; objects numbered consecutively in the
        order of their first fragment.
    """
    nodes = fragment_count + 1
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = sparse.coo_array((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(nodes, nodes))
    _, component = connected_components(graph, directed=False)
    first_fragment = np.full(component.max() + 1, nodes, np.int64)
    np.minimum.at(first_fragment, component, np.arange(nodes))
    keep = first_fragment != 0  # the background's component
    if min_size > 0:
        voxels = np.bincount(component, weights=np.asarray(sizes, np.float64), minlength=len(first_fragment))
        keep &= voxels >= min_size
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(first_fragment[kept], kind="stable")]
    number = np.zeros(len(first_fragment), np.int64)
    number[kept] = np.arange(1, len(kept) + 1)
    return number[component]
