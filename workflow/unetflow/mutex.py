"""The mutex watershed (Wolf et al. 2020, the ``mwatershed`` package) on affinities in [0, 1]
(:mod:`unetflow.affinities`): how their values become attractive and repulsive edge weights.

Kept apart from :mod:`unetflow.affinities` so that training, which makes affinity targets,
does not need ``mwatershed``.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import relabel_sequential

from .affinities import is_nearest


def mutex_segmentation(affinities: np.ndarray, offsets: list[tuple[int, ...]], *, bias: float) -> np.ndarray:
    """Clusters of the mutex watershed (``mwatershed.agglom``) on ``affinities`` in [0, 1].

    Face-neighbour edges attract with their affinity as strength. A long-range edge repels
    where its affinity is below ``bias``, with strength ``(bias - affinity) / bias``, and
    attracts above it, with strength ``(affinity - bias) / (1 - bias)``: both sides span
    [0, 1], so a long-range edge across a clear membrane (affinity 0) repels as strongly as
    the surest face neighbours attract, and is taken before the attraction through a hole in
    that membrane. ``bias`` 1 is the paper's form (every long-range edge repels, with
    strength ``1 - affinity``). Edges are taken strongest first; an attractive edge merges
    its two clusters unless a repulsive edge taken before joins them.

    Returns
    -------
    np.ndarray
        uint32 cluster IDs 1..n numbered over the image; 0 where a pixel ends in a cluster of
        its own (``mwatershed`` leaves singletons unlabelled).
    """
    import mwatershed  # a compiled extension: imported where it is used, not while Snakemake builds the DAG

    # an offset as long as the image links no pixel pair (and mwatershed refuses it)
    fitting = [channel for channel, offset in enumerate(offsets)
               if all(abs(step) < length for step, length in zip(offset, affinities.shape[1:]))]
    weights = affinities[fitting].astype(np.float64)
    for channel, offset in enumerate(offsets[channel] for channel in fitting):
        if not is_nearest(offset):
            weights[channel] = long_range_weight(weights[channel], bias)
    clusters = mwatershed.agglom(weights, [list(offsets[channel]) for channel in fitting])
    # mwatershed numbers clusters by a pixel index, in uint64: number them 1..n
    return relabel_sequential(clusters)[0].astype(np.uint32)


def long_range_weight(affinity: np.ndarray, bias: float) -> np.ndarray:
    """Signed strength of long-range edges: negative (repulsive) below ``bias``, each side in [-1, 1]."""
    repulsion = (affinity - bias) / bias
    if bias >= 1:
        return repulsion
    return np.where(affinity < bias, repulsion, (affinity - bias) / (1 - bias))
