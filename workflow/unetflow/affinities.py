"""Affinities: for each pixel ``u`` and offset ``o``, how likely ``u`` and ``u + o`` lie in one object.

An affinity map has one channel per offset, ``(len(offsets), *spatial)``; channel ``k`` at
``u`` links ``u`` and ``u + offsets[k]`` (the convention of ``mwatershed``). Offsets of
length one in one axis are the *nearest-neighbour* edges that hold an object together;
longer ones are the *long-range* edges that keep two objects apart where the membrane
between them is faint at a pixel or two (Wolf et al. 2020): a pixel pair nine pixels apart
across a membrane is split even if the nearest-neighbour path around it leaks.

- :func:`affinities_from_labels`: the exact affinities of a label image, 1 where both
  pixels lie in one object, 0 across objects and on background, and where each is valid
  (the partner inside the image, neither pixel of an ignored class).
- :func:`affinities_from_foreground`: affinities estimated from a foreground probability
  map: the lowest foreground probability on the straight line from ``u`` to ``u + o``, so a
  membrane anywhere between the two pixels lowers it.
- :func:`offsets_for`: the nearest-neighbour and long-range offsets of a slice or a volume.
- :class:`Predicted`: affinities a network predicted (``models.<name>.affinities``), which the
  mutex watershed takes instead of estimating them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

class Predicted(NamedTuple):
    """Affinities a network predicted: ``values`` (len(offsets), *spatial) in [0, 1], one channel
    per offset of ``offsets``."""

    values: np.ndarray
    offsets: list[tuple[int, ...]]


LONG_RANGE = (3, 9, 27)  # px in x: long-range edge lengths along each axis and both in-plane diagonals


def offsets_for(ndim: int, sampling: tuple[float, ...] | None = None) -> list[tuple[int, ...]]:
    """Nearest-neighbour offsets (one per axis) first, then long-range ones.

    Long-range offsets reach :data:`LONG_RANGE` pixels along each axis and both diagonals of
    the last two (in-plane) axes; along an axis whose voxels are ``sampling`` times longer
    than in x (anisotropic z) the same physical length is ``round(length / sampling)``
    voxels, left out where it rounds to one voxel or repeats a shorter one.
    """
    sampling = (1.0,) * ndim if sampling is None else tuple(float(value) for value in sampling)
    nearest = [unit(ndim, axis, 1) for axis in range(ndim)]
    long_range = []
    for length in LONG_RANGE:
        for axis in range(ndim):
            voxels = int(round(length / sampling[axis]))
            offset = unit(ndim, axis, voxels)
            if voxels > 1 and offset not in long_range:
                long_range.append(offset)
        long_range += [(0,) * (ndim - 2) + (length, length), (0,) * (ndim - 2) + (length, -length)]
    return nearest + long_range


def unit(ndim: int, axis: int, length: int) -> tuple[int, ...]:
    """The offset of ``length`` voxels along ``axis``."""
    return tuple(length if index == axis else 0 for index in range(ndim))


def is_nearest(offset: tuple[int, ...]) -> bool:
    """Whether ``offset`` links face neighbours (one voxel along one axis)."""
    return sum(abs(step) for step in offset) == 1


def shifted(array: np.ndarray, offset: tuple[int, ...], fill) -> np.ndarray:
    """``result[u] = array[u + offset]``, and ``fill`` where ``u + offset`` lies outside the array."""
    result = np.full_like(array, fill)
    if any(abs(step) >= length for step, length in zip(offset, array.shape)):
        return result
    source, target = [], []
    for step, length in zip(offset, array.shape):
        source.append(slice(max(step, 0), length + min(step, 0)))
        target.append(slice(max(-step, 0), length - max(step, 0)))
    result[tuple(target)] = array[tuple(source)]
    return result


def affinities_from_labels(labels: np.ndarray, offsets: list[tuple[int, ...]],
                           ignore: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact affinities of ``labels`` and where they are known.

    Parameters
    ----------
    labels
        Object IDs of one slice or volume; 0 is background (membrane), which belongs to no object.
    offsets
        One offset per channel, each with one entry per axis of ``labels``.
    ignore
        A label whose pixels are unknown (sparse annotations): every edge touching one is invalid.

    Returns
    -------
    affinities : np.ndarray
        float32 ``(len(offsets), *labels.shape)``: 1 where ``u`` and ``u + o`` hold the same
        object, 0 otherwise (two objects, or background at either end).
    valid : np.ndarray
        bool, the same shape: ``u + o`` lies inside the image and neither end is ``ignore``.
    """
    labels = np.asarray(labels)
    known = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    affinities = np.empty((len(offsets), *labels.shape), np.float32)
    valid = np.empty((len(offsets), *labels.shape), bool)
    for channel, offset in enumerate(offsets):
        partner = shifted(labels, offset, 0)
        affinities[channel] = (labels == partner) & (labels != 0) & known
        valid[channel] = known & shifted(known, offset, False)
    return affinities, valid


def affinities_from_foreground(foreground: np.ndarray, offsets: list[tuple[int, ...]]) -> np.ndarray:
    """Affinities estimated from a foreground probability map.

    Channel ``k`` at ``u`` is the lowest foreground probability at the pixels of the straight
    line from ``u`` to ``u + offsets[k]`` (both ends included, ``max |o|`` steps rounded to
    the pixel grid): a membrane crossing the line lowers it; 0 where ``u + o`` lies outside.
    For a face neighbour it is ``min(f(u), f(u + o))``.

    Returns
    -------
    np.ndarray
        float32 ``(len(offsets), *foreground.shape)``, in [0, 1].
    """
    foreground = np.asarray(foreground, np.float32)
    affinities = np.empty((len(offsets), *foreground.shape), np.float32)
    for channel, offset in enumerate(offsets):
        steps = max(abs(step) for step in offset)
        lowest = foreground.copy()
        for step in range(1, steps + 1):
            point = tuple(int(round(component * step / steps)) for component in offset)
            np.minimum(lowest, shifted(foreground, point, 0.0), out=lowest)
        affinities[channel] = lowest
    return affinities
