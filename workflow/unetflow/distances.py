"""Distances of every pixel to its nearest and second-nearest object.

The U-Net weight map needs, per background pixel, ``d1`` (distance to the
nearest object) and ``d2`` (distance to the second-nearest *other* object).
No library computes ``d2``: scipy's and edt's distance transforms give the
nearest feature only, so the textbook method runs one full distance transform
per object (``naive_nearest_two_distances``, kept as the reference), which is
O(objects x pixels).

``nearest_two_distances`` is exact and O(pixels x window): a separable
distance transform that carries labels. A column pass finds, for every pixel,
the vertical distance to the nearest object pixel in its column (``g1``, with
its label) and to the nearest one of another label (``g2``). A row pass then
takes, for each pixel, the minimum of ``dx^2 + g^2`` over the columns within
``max_distance``, using ``g1`` for d1 and, for d2, ``g1`` where that column's
nearest label differs from the pixel's nearest label, else ``g2``. This is
exact because in every column the nearest pixel of a label other than ``L`` is
either the column's nearest pixel (if its label is not ``L``) or the nearest
one of a label other than the column's nearest label. Offsets are visited
outwards and the search stops once ``dx^2`` exceeds the best distance found,
so the cost is proportional to the distances themselves. The kernels are
compiled with numba (without the GIL, so Dask threads run them in parallel).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import ndimage

FAR = np.iinfo(np.int32).max // 4


@njit(cache=True, nogil=True)
def _column_pass(objects):
    """Per pixel: vertical distance to the nearest object pixel in its column (``g1``), that
    pixel's label, and the vertical distance to the nearest object pixel of another label
    (``g2``). Scans rows downwards, then upwards, so memory is read in order."""
    height, width = objects.shape
    up = np.empty((height, width), np.int32)
    up_label = np.empty((height, width), np.int64)
    up_other = np.empty((height, width), np.int32)
    g1 = np.empty((height, width), np.int32)
    label1 = np.empty((height, width), np.int64)
    g2 = np.empty((height, width), np.int32)
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
            g1[row, column] = nearest
            label1[row, column] = nearest_label
            from_above = up[row, column] if up_label[row, column] != nearest_label else up_other[row, column]
            from_below = down if last_label[column] != nearest_label else down_other
            g2[row, column] = min(from_above, from_below)
    return g1, label1, g2


@njit(cache=True, nogil=True)
def _row_pass(g1, label1, g2, mask, max_distance):
    height, width = g1.shape
    limit = int(max_distance)
    far = float(FAR) ** 2
    d1 = np.full((height, width), np.inf)
    d2 = np.full((height, width), np.inf)
    for row in range(height):
        for column in range(width):
            if not mask[row, column]:
                continue
            best1, nearest = far, 0
            for offset in range(limit + 1):
                if offset * offset >= best1:
                    break
                for j in (column - offset, column + offset):
                    if 0 <= j < width and g1[row, j] < FAR:
                        candidate = offset * offset + g1[row, j] * g1[row, j]
                        if candidate < best1:
                            best1, nearest = candidate, label1[row, j]
            if best1 > max_distance * max_distance:
                continue
            best2 = far
            for offset in range(limit + 1):
                if offset * offset >= best2:
                    break
                for j in (column - offset, column + offset):
                    if 0 <= j < width:
                        vertical = g1[row, j] if label1[row, j] != nearest else g2[row, j]
                        if vertical < FAR:
                            best2 = min(best2, offset * offset + vertical * vertical)
            d1[row, column] = np.sqrt(best1)
            if best2 <= max_distance * max_distance:
                d2[row, column] = np.sqrt(best2)
    return d1, d2


def nearest_two_distances(
    objects: np.ndarray, *, max_distance: float, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest object, exact up to ``max_distance``.

    Parameters
    ----------
    objects
        2-D instance labels, 0 = background.
    max_distance
        Distances above it are returned as ``inf`` (they are exact below).
    mask
        Pixels to compute (default: all); others are ``inf``.

    Returns
    -------
    d1, d2
        float64 arrays: Euclidean distance from each pixel centre to the nearest
        object pixel, and to the nearest pixel of a different object.
    """
    if objects.ndim != 2:
        raise ValueError(f"objects must be 2-D, got shape {objects.shape}")
    if mask is None:
        mask = np.ones(objects.shape, dtype=bool)
    g1, label1, g2 = _column_pass(np.ascontiguousarray(objects))
    return _row_pass(g1, label1, g2, np.ascontiguousarray(mask, dtype=np.bool_), float(max_distance))


def naive_nearest_two_distances(objects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: one full Euclidean distance transform per object, O(objects x pixels)."""
    d1 = np.full(objects.shape, np.inf)
    d2 = np.full(objects.shape, np.inf)
    for label in np.unique(objects[objects > 0]):
        distance = ndimage.distance_transform_edt(objects != label)
        d2 = np.minimum(d2, np.maximum(d1, distance))
        d1 = np.minimum(d1, distance)
    return d1, d2
