"""The U-Net weight map (Ronneberger et al. 2015, eq. 2), of a slice, a stack or a volume (Dask).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

``w_c`` balances the class frequencies; ``d1`` and ``d2`` are the distances to
the nearest and the second-nearest object. The border term is added on
background pixels only, as in the paper, where it targets "the separation
border between touching cells": there it makes the thin gaps between objects
count up to ``w0`` times more in the loss. Foreground pixels get ``w_c``
alone: inside an object d1 is zero, and the term would up-weight every pixel
near any object edge, not the gaps that separate objects. Pixels whose class is
unknown (sparse annotations, ``io.IGNORE``) weigh 0: no class weight and no border
term; the class frequencies are those of the known pixels, and distances are to the
labelled objects only.

With ``--dims 2`` (default) every slice gets its own 2-D map. With ``--dims 3``
the map is computed over the whole volume in 3-D: distances are measured in x
pixels, with the store's voxel size giving the spacing of z and y (see
:meth:`VoxelSize.in_x_pixels`), so ``sigma`` keeps its meaning in pixels; the
class weights are the dataset's.
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np

from . import io
from .distances import nearest_two_distances


FLOAT32_RESOLUTION = 2.0**-24


def border_cutoff(w0: float, sigma: float) -> float:
    """The distance sum beyond which the border term is below float32 resolution of ``w0``.

    ``w0 * exp(-s^2 / (2 sigma^2)) < w0 * 2^-24``  for  ``s > sigma * sqrt(48 ln 2)``.
    """
    return sigma * math.sqrt(-2.0 * math.log(FLOAT32_RESOLUTION))


def halo_depth(w0: float, sigma: float, spacing: float = 1.0) -> int:
    """Pixels of context a block needs along an axis with pixels ``spacing`` apart, for its
    weights to equal the whole image's: :func:`border_cutoff` in that axis' pixels, plus one."""
    return math.ceil(border_cutoff(w0, sigma) / spacing) + 1


def class_weights(class_counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency class weights, normalised so that the mean pixel weight is 1.

    Parameters
    ----------
    class_counts
        Pixels per class, shape (K,).

    Returns
    -------
    np.ndarray
        ``w_k = N / (K' * n_k)`` for the K' classes present (``n_k > 0``), 0 for
        absent classes; then ``sum_k n_k w_k = N``: the weights average to one
        over the pixels and each present class carries the same total weight.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def border_term(d1: np.ndarray, d2: np.ndarray, background: np.ndarray, *, w0: float, sigma: float) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels, 0 elsewhere.

    Pixels with fewer than two objects within reach get 0 (d2 is infinite).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        term = w0 * np.exp(-np.square(d1 + d2) / (2.0 * sigma**2))
    return np.where(background & np.isfinite(term), term, 0.0)


def weight_map(
    classes: np.ndarray,
    objects: np.ndarray,
    *,
    class_weight: np.ndarray,
    w0: float,
    sigma: float,
    spacing: tuple[float, ...] | None = None,
) -> np.ndarray:
    """U-Net weight map of one slice, or of a volume in 3-D.

    Parameters
    ----------
    classes
        Training target, class index per pixel (2-D) or voxel (3-D); class 0 is background.
    objects
        Instance labels (0 = background). Object pixels that are background in
        ``classes`` (the borders between touching objects) count as background.
    class_weight
        ``w_c`` per class, e.g. from :func:`class_weights`.
    w0, sigma
        The border term's amplitude and width (paper: 10 and about 5 px).
    spacing
        Distance between pixel centres along each axis, in the units of
        ``sigma`` (default: 1 on every axis).

    Returns
    -------
    np.ndarray
        float32 weights, same shape as ``classes``; finite everywhere.

    Notes
    -----
    ``w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` on background
    pixels, ``w_c(x)`` on foreground pixels, 0 on unknown pixels (class ``io.IGNORE``);
    ``d1`` and ``d2`` are Euclidean distances with the given spacing.

    References
    ----------
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015, eq. 2.
    """
    background = classes == 0
    d1, d2 = nearest_two_distances(np.where(background, 0, objects), max_distance=border_cutoff(w0, sigma),
                                   mask=background, spacing=spacing)
    return known_only(classes, class_weight, border_term(d1, d2, background, w0=w0, sigma=sigma))


def known_only(classes: np.ndarray, class_weight: np.ndarray, border: np.ndarray) -> np.ndarray:
    """``w_c + border`` where the class is known, 0 where it is unknown (``io.IGNORE``)."""
    known = io.known(classes)
    if known.all():
        return (class_weight[classes] + border).astype(np.float32)
    return np.where(known, class_weight[np.where(known, classes, 0)] + border, 0.0).astype(np.float32)


def naive_weight_map(
    classes: np.ndarray,
    objects: np.ndarray,
    *,
    class_weight: np.ndarray,
    w0: float,
    sigma: float,
    spacing: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Reference weight map, 2-D or 3-D: one full distance transform per object (slow, for tests)."""
    from .distances import naive_nearest_two_distances

    background = classes == 0
    d1, d2 = naive_nearest_two_distances(np.where(background, 0, objects), spacing)
    return known_only(classes, class_weight, border_term(d1, d2, background, w0=w0, sigma=sigma))


def slice_class_weights(classes: da.Array, num_classes: int, *, per_slice: bool) -> np.ndarray:
    """Class weights per slice, shape (z, K): the dataset's own for every slice, or each slice's,
    from the known pixels (unknown ones, ``io.IGNORE``, fall outside the K counted)."""
    counts = da.stack([da.bincount(plane.ravel(), minlength=io.IGNORE + 1)[:num_classes] for plane in classes])
    counts = counts.compute()
    if per_slice:
        return np.stack([class_weights(row) for row in counts])
    return np.repeat(class_weights(counts.sum(axis=0))[None], classes.shape[0], axis=0)


def weight_map_stack(
    classes: da.Array,
    objects: da.Array,
    *,
    slice_weights: np.ndarray,
    w0: float,
    sigma: float,
) -> da.Array:
    """Weight maps of a (z, y, x) stack: one task per chunk, with a halo where slices are tiled.

    The halo covers :func:`border_cutoff`, so tiled results equal untiled ones.
    """
    halo = halo_depth(w0, sigma)
    depth = {0: 0, 1: halo if classes.numblocks[1] > 1 else 0, 2: halo if classes.numblocks[2] > 1 else 0}

    def block(class_block: np.ndarray, object_block: np.ndarray, block_info=None) -> np.ndarray:
        z_start = block_info[0]["array-location"][0][0]
        out = np.empty(class_block.shape, np.float32)
        for offset in range(class_block.shape[0]):
            out[offset] = weight_map(
                class_block[offset],
                object_block[offset],
                class_weight=slice_weights[z_start + offset],
                w0=w0,
                sigma=sigma,
            )
        return out

    return da.map_overlap(
        block, classes, objects, depth=depth, boundary="none", dtype=np.float32, trim=True, align_arrays=False
    )


def weight_map_volume(
    classes: da.Array,
    objects: da.Array,
    *,
    class_weight: np.ndarray,
    w0: float,
    sigma: float,
    spacing: tuple[float, float, float],
) -> da.Array:
    """The 3-D weight map of a (z, y, x) volume: one task per block, with a halo along every
    axis that has several blocks.

    Blocks are the store's chunks (cubes of a volume), made at least as long as the halo
    along each axis (rechunked with :func:`volume_z_chunks` where a chunk is shorter); the
    halo covers :func:`border_cutoff` along each axis, so blockwise results equal
    :func:`weight_map` of the whole volume (within float32 resolution of ``w0``).
    A task holds its block grown by the halo on every side.
    """
    depths = [halo_depth(w0, sigma, step) for step in spacing]
    longer = {axis: volume_z_chunks(classes.shape[axis], depths[axis]) for axis in range(3)
              if classes.numblocks[axis] > 1 and min(classes.chunks[axis]) < depths[axis]}
    classes, objects = classes.rechunk(longer), objects.rechunk(longer)
    depth = {axis: depths[axis] if classes.numblocks[axis] > 1 else 0 for axis in range(3)}

    def block(class_block: np.ndarray, object_block: np.ndarray) -> np.ndarray:
        return weight_map(class_block, object_block, class_weight=class_weight, w0=w0, sigma=sigma, spacing=spacing)

    return da.map_overlap(
        block, classes, objects, depth=depth, boundary="none", dtype=np.float32, trim=True, align_arrays=False
    )


def volume_z_chunks(slices: int, halo: int) -> tuple[int, ...]:
    """Voxels per block along an axis of ``slices`` voxels: as many blocks as fit with at least
    ``halo`` voxels each, sizes differing by at most one (one block if the axis is shorter)."""
    blocks = max(1, slices // halo)
    return tuple(len(part) for part in np.array_split(np.arange(slices), blocks))
