"""Windows of an image mirrored where they leave it: the paper's extrapolation of the
missing context at the border (Fig. 2), shared by augmentation and overlap-tile prediction."""

from __future__ import annotations

import numpy as np


def mirror_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Indices ``start .. stop-1`` folded into ``0 .. length-1`` by mirroring at the edges
    (``numpy.pad(mode="reflect")``, ``scipy.ndimage`` mode ``mirror``), any distance out."""
    indices = np.arange(start, stop)
    if length == 1:
        return np.zeros_like(indices)
    period = 2 * (length - 1)
    indices = np.mod(indices, period)
    return np.where(indices >= length, period - indices, indices)


def mirrored_window(plane: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The window ``plane[rows[0]:rows[1], cols[0]:cols[1]]``, mirrored where it leaves the plane."""
    if rows[0] >= 0 and cols[0] >= 0 and rows[1] <= plane.shape[0] and cols[1] <= plane.shape[1]:
        return np.asarray(plane[rows[0] : rows[1], cols[0] : cols[1]])
    row_index = mirror_indices(*rows, plane.shape[0])
    col_index = mirror_indices(*cols, plane.shape[1])
    return np.asarray(plane[row_index[:, None], col_index[None, :]])
