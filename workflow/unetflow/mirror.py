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


def mirrored_window(array, *ranges: tuple[int, int]) -> np.ndarray:
    """The window ``array[start0:stop0, start1:stop1, ...]`` of a slice or volume (numpy, Zarr),
    one ``(start, stop)`` per axis, mirrored where it leaves the array.

    Only the box of the array the window folds onto is read, with one plain slice. An array-like
    whose reads come with leading axes of their own (channels first, as
    :class:`~unetflow.intensity.NormalizedImage`) keeps them.
    """
    if all(0 <= start and stop <= length for (start, stop), length in zip(ranges, array.shape)):
        return np.asarray(array[tuple(slice(start, stop) for start, stop in ranges)])
    indices = [mirror_indices(start, stop, length) for (start, stop), length in zip(ranges, array.shape)]
    lows = [int(index.min()) for index in indices]
    box = np.asarray(array[tuple(slice(low, int(index.max()) + 1) for low, index in zip(lows, indices))])
    return box[(Ellipsis, *np.ix_(*(index - low for index, low in zip(indices, lows))))]


class ChannelsFirst:
    """A (c, ...) array seen by :func:`mirrored_window` as its spatial part: ``shape`` leaves the
    channel axis out, and every read keeps it."""

    def __init__(self, array):
        self.array, self.shape = array, tuple(array.shape[1:])

    def __getitem__(self, selection: tuple) -> np.ndarray:
        return np.asarray(self.array[(slice(None), *selection)])
