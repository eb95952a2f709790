"""Distances of every pixel (2-D) or voxel (3-D) to its nearest and second-nearest object.

The U-Net weight map needs, per background pixel, ``d1`` (distance to the
nearest object) and ``d2`` (distance to the second-nearest *other* object).
No library computes ``d2``: scipy's and edt's distance transforms give the
nearest feature only, so the textbook method runs one full distance transform
per object (``naive_nearest_two_distances``, kept as the reference), which is
O(objects x pixels).

``nearest_two_distances`` is exact and O(pixels x window): a separable
distance transform that carries labels, one pass per axis, in 2-D and 3-D,
with any voxel spacing. Every pass leaves, per pixel, a summary of the object
pixels in the subspace scanned so far (the line, then the plane, then the
volume through it): the squared distance to the nearest one, its label, and the
squared distance to the nearest one of *another* label than that. The first
pass scans columns along axis 0, downwards and then upwards. Each further pass
scans along the next axis and takes, per pixel, the minimum of
``(offset * spacing)^2 + s`` over the pixels on its line within
``max_distance``, with ``s`` the nearest distance for d1 and, for d2, the
nearest distance where that pixel's nearest label differs from this pixel's
nearest label, else the other-label distance. This is exact because in every
set of object pixels the nearest pixel of a label other than ``L`` is either
the set's nearest pixel (if its label is not ``L``) or the nearest one of a
label other than the set's nearest label. Offsets are visited outwards and the
search stops once ``(offset * spacing)^2`` reaches the best distance found, so
the cost is proportional to the distances themselves. Only distances up to
``max_distance`` are needed: offsets beyond ``max_distance / spacing`` are not
visited, and summaries beyond it are dropped. The kernels are compiled with
numba (without the GIL, so Dask threads run them in parallel); each pass reads
its lines contiguously (the arrays are transposed so the scanned axis is last).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy import ndimage

FAR = np.iinfo(np.int32).max // 4


@njit(cache=True, nogil=True)
def _squared_length(steps, spacing):
    """``(steps * spacing)^2``; infinite for ``steps >= FAR`` (no object pixel)."""
    return np.inf if steps >= FAR else (steps * spacing) ** 2


@njit(cache=True, nogil=True)
def _column_pass(objects, spacing):
    """Per pixel of a 2-D array: the squared distance along its column (axis 0, pixels
    ``spacing`` apart) to the nearest object pixel in that column, that pixel's label, and the
    squared distance to the nearest object pixel of another label; ``inf`` where there is none.
    Scans rows downwards, then upwards, so memory is read in order."""
    height, width = objects.shape
    up = np.empty((height, width), np.int32)
    up_label = np.empty((height, width), np.int64)
    up_other = np.empty((height, width), np.int32)
    squared1 = np.empty((height, width), np.float64)
    label1 = np.empty((height, width), np.int64)
    squared2 = np.empty((height, width), np.float64)
    last_label = np.zeros(width, np.int64)
    last_position = np.full(width, -FAR, np.int64)
    other_position = np.full(width, -FAR, np.int64)
    for row in range(height):
        for column in range(width):
            label = objects[row, column]
            if label != 0:
                if label != last_label[column]:
                    other_position[column] = last_position[column]
                last_label[column] = label
                last_position[column] = row
            up[row, column] = min(row - last_position[column], FAR)
            up_label[row, column] = last_label[column]
            up_other[row, column] = min(row - other_position[column], FAR)
    last_label[:] = 0
    last_position[:] = height + FAR
    other_position[:] = height + FAR
    for row in range(height - 1, -1, -1):
        for column in range(width):
            label = objects[row, column]
            if label != 0:
                if label != last_label[column]:
                    other_position[column] = last_position[column]
                last_label[column] = label
                last_position[column] = row
            down = min(last_position[column] - row, FAR)
            down_other = min(other_position[column] - row, FAR)
            if up[row, column] <= down:
                nearest, nearest_label = up[row, column], up_label[row, column]
            else:
                nearest, nearest_label = down, last_label[column]
            squared1[row, column] = _squared_length(nearest, spacing)
            label1[row, column] = nearest_label
            from_above = up[row, column] if up_label[row, column] != nearest_label else up_other[row, column]
            from_below = down if last_label[column] != nearest_label else down_other
            squared2[row, column] = _squared_length(min(from_above, from_below), spacing)
    return squared1, label1, squared2


@njit(cache=True, nogil=True)
def _line_pass(squared1, label1, squared2, mask, spacing, max_distance):
    """Extend the summaries ``(squared1, label1, squared2)`` of a 2-D array of lines along its
    last axis (pixels ``spacing`` apart), for the pixels in ``mask``; summaries beyond
    ``max_distance`` become ``(inf, 0, inf)``."""
    lines, length = squared1.shape
    limit = min(int(max_distance / spacing), length - 1)
    cutoff = max_distance * max_distance
    out1 = np.full((lines, length), np.inf)
    out_label = np.zeros((lines, length), np.int64)
    out2 = np.full((lines, length), np.inf)
    for line in range(lines):
        for position in range(length):
            if not mask[line, position]:
                continue
            best1, nearest = np.inf, 0
            for offset in range(limit + 1):
                step = (offset * spacing) ** 2
                if step >= best1:
                    break
                for j in (position - offset, position + offset):
                    if 0 <= j < length:
                        candidate = step + squared1[line, j]
                        if candidate < best1:
                            best1, nearest = candidate, label1[line, j]
            if best1 > cutoff:
                continue
            best2 = np.inf
            for offset in range(limit + 1):
                step = (offset * spacing) ** 2
                if step >= best2:
                    break
                for j in (position - offset, position + offset):
                    if 0 <= j < length:
                        other = squared1[line, j] if label1[line, j] != nearest else squared2[line, j]
                        best2 = min(best2, step + other)
            out1[line, position] = best1
            out_label[line, position] = nearest
            if best2 <= cutoff:
                out2[line, position] = best2
    return out1, out_label, out2


def _pass_along(
    axis: int, summary: tuple[np.ndarray, ...], mask: np.ndarray, spacing: float, max_distance: float
) -> tuple[np.ndarray, ...]:
    """:func:`_line_pass` along ``axis`` of N-D summaries, run on a copy with that axis last."""
    moved = [np.moveaxis(array, axis, -1) for array in (*summary, mask)]
    shape = moved[0].shape
    lines = [np.ascontiguousarray(array).reshape(-1, shape[-1]) for array in moved]
    extended = _line_pass(*lines, spacing, max_distance)
    return tuple(np.moveaxis(array.reshape(shape), -1, axis) for array in extended)


def checked_spacing(spacing: tuple[float, ...] | None, ndim: int) -> tuple[float, ...]:
    """``spacing`` as floats, one per axis (default 1 each); ValueError if it does not fit."""
    if spacing is None:
        return (1.0,) * ndim
    if len(spacing) != ndim or not all(math.isfinite(step) and step > 0 for step in spacing):
        raise ValueError(f"spacing must be {ndim} positive numbers, one per axis, got {spacing}")
    return tuple(float(step) for step in spacing)


def nearest_two_distances(
    objects: np.ndarray,
    *,
    max_distance: float,
    mask: np.ndarray | None = None,
    spacing: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest object, exact up to ``max_distance``.

    Parameters
    ----------
    objects
        2-D or 3-D instance labels, 0 = background.
    max_distance
        Distances above it are returned as ``inf`` (they are exact below).
    mask
        Pixels to compute (default: all); others are ``inf``.
    spacing
        Distance between pixel centres along each axis, in the units of
        ``max_distance`` (default: 1 on every axis).

    Returns
    -------
    d1, d2
        float64 arrays: Euclidean distance from each pixel centre to the nearest
        object pixel, and to the nearest pixel of a different object.

    Notes
    -----
    ``d(p, q) = sqrt(sum_k ((p_k - q_k) spacing_k)^2)``, computed with one pass
    per axis (see the module docstring); the result equals
    :func:`naive_nearest_two_distances` wherever it is at most ``max_distance``.
    """
    if objects.ndim not in (2, 3):
        raise ValueError(f"objects must be 2-D or 3-D, got shape {objects.shape}")
    spacing = checked_spacing(spacing, objects.ndim)
    mask = np.ones(objects.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != objects.shape:
        raise ValueError(f"mask has shape {mask.shape}, objects {objects.shape}; they must be equal")
    columns = np.ascontiguousarray(objects).reshape(objects.shape[0], -1)
    summary = tuple(array.reshape(objects.shape) for array in _column_pass(columns, spacing[0]))
    for axis in range(1, objects.ndim):
        pixels = mask if axis == objects.ndim - 1 else np.ones(objects.shape, dtype=bool)
        summary = _pass_along(axis, summary, pixels, spacing[axis], float(max_distance))
    squared1, _, squared2 = summary
    return np.sqrt(squared1), np.sqrt(squared2)


def naive_nearest_two_distances(
    objects: np.ndarray, spacing: tuple[float, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: one full Euclidean distance transform per object, O(objects x pixels).

    ``spacing`` is passed to :func:`scipy.ndimage.distance_transform_edt` as ``sampling``.
    """
    d1 = np.full(objects.shape, np.inf)
    d2 = np.full(objects.shape, np.inf)
    for label in np.unique(objects[objects > 0]):
        distance = ndimage.distance_transform_edt(objects != label, sampling=spacing)
        d2 = np.minimum(d2, np.maximum(d1, distance))
        d1 = np.minimum(d1, distance)
    return d1, d2
