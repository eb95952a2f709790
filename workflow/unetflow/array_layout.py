"""Which axes of an image file's array are z, the channels, y and x.

Files state it (a TIFF hyperstack's or OME-Zarr's axes) or the dataset's ``channel_axis``
does; the readers (:mod:`unetflow.readers`) read slices through a :class:`Layout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Layout:
    """Which axes of a file's array are z, the channels, y and x (others have size one)."""

    shape: tuple[int, ...]
    z_axis: int | None
    channel_axis: int | None
    plane_axes: tuple[int, int]

    @property
    def stack_shape(self) -> tuple[int, int, int]:
        z = 1 if self.z_axis is None else self.shape[self.z_axis]
        return (z, *(self.shape[axis] for axis in self.plane_axes))

    @property
    def channels(self) -> int:
        return 1 if self.channel_axis is None else self.shape[self.channel_axis]

    def index(self, z: int, channel: int | None = None) -> tuple:
        """The array index of slice ``z``: all channels (a slice) or one, whole planes."""
        index: list = [0] * len(self.shape)
        for axis in self.plane_axes:
            index[axis] = slice(None)
        if self.z_axis is not None:
            index[self.z_axis] = z
        if self.channel_axis is not None:
            index[self.channel_axis] = slice(None) if channel is None else channel
        return tuple(index)

    def arrange(self, values: np.ndarray) -> np.ndarray:
        """A slice read with :meth:`index` as (y, x), or (c, y, x) with channels."""
        if self.channel_axis is None:
            return values
        position = sum(1 for axis in (*self.plane_axes, self.channel_axis)
                       if axis < self.channel_axis)  # where the channel axis is among those kept
        return np.moveaxis(values, position, 0)


def layout_of(path: Path, shape: tuple[int, ...], axes: str | None, channel_axis: int | None) -> Layout:
    """The :class:`Layout` of an array of ``shape``: channels along ``channel_axis`` (the
    config's) or the axis ``axes`` names C, y and x the last two other axes, z the one other
    axis longer than one."""
    names = (axes or "").upper() if axes and len(axes) == len(shape) else None
    described = f"shape {shape}" + (f", axes {names}" if names else "")
    if channel_axis is not None:
        if not -len(shape) <= channel_axis < len(shape):
            raise InputError(f"{path}: channel_axis {channel_axis} is no axis of the image ({described}); give the "
                             f"index of its channel axis, 0 to {len(shape) - 1}, in the dataset's channel_axis")
        channel_axis %= len(shape)
    elif names and "C" in names and shape[names.index("C")] > 1:
        channel_axis = names.index("C")
    others = [axis for axis in range(len(shape)) if axis != channel_axis]
    if len(others) < 2:
        raise InputError(f"{path}: the image ({described}) has no y and x axes; give 2-D slices")
    plane_axes, leading = tuple(others[-2:]), [axis for axis in others[:-2] if shape[axis] > 1]
    if len(leading) > 1:
        name = (lambda axis: names[axis] if names else f"axis {axis}")
        raise InputError(
            f"{path}: the image has {shape[leading[0]]} entries along {name(leading[0])} and {shape[leading[1]]} "
            f"along {name(leading[1])} ({described}); unetflow reads slices (z, y, x), with channels: give the "
            "channel axis as the dataset's channel_axis, or save one time point (e.g. with Fiji or ome-zarr-py)")
    return Layout(tuple(shape), leading[0] if leading else None, channel_axis, plane_axes)
