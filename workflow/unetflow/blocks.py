"""A grid of chunk-aligned blocks over an array, each with a halo of context around it.

A block's *core* is the region it decides (written by one task, so cores are unions of
the output's chunks and no two tasks write one chunk); its *outer* region is the core
grown by the halo on every side, clipped to the array, which a task reads for context.
Blocks are numbered in C order of their grid position, so a stack's blocks come slice
range by slice range.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

Region = tuple[slice, ...]


@dataclass(frozen=True)
class Block:
    number: int
    position: tuple[int, ...]  # in the grid
    core: Region  # absolute
    outer: Region  # absolute: core + halo, clipped to the array

    @property
    def core_in_outer(self) -> Region:
        """The core, relative to the outer region (where the core lies in a read window)."""
        return tuple(slice(core.start - outer.start, core.stop - outer.start) for core, outer in zip(self.core, self.outer))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(region.stop - region.start for region in self.core)


@dataclass(frozen=True)
class Face:
    """Where block ``lower`` meets block ``upper``, its neighbour one step up along ``axis``:
    ``lower_layer`` and ``upper_layer`` are the two one-voxel layers that touch across it."""

    lower: int
    upper: int
    axis: int
    lower_layer: Region
    upper_layer: Region


def aligned_block_shape(shape: tuple[int, ...], chunks: tuple[int, ...], edge: tuple[int, ...]) -> tuple[int, ...]:
    """Per axis, the whole number of chunks closest to ``edge`` (at least one chunk), or the
    whole axis where it is no longer than that."""
    block = []
    for length, chunk, wanted in zip(shape, chunks, edge):
        size = chunk * max(1, round(wanted / chunk))
        block.append(length if size >= length else size)
    return tuple(block)


class BlockGrid:
    """Blocks of ``block_shape`` (the last ones shorter) covering ``shape``, with ``halo`` voxels
    of context per axis."""

    def __init__(self, shape: tuple[int, ...], block_shape: tuple[int, ...], halo: tuple[int, ...]):
        if not len(shape) == len(block_shape) == len(halo):
            raise ValueError(f"shape {shape}, block shape {block_shape} and halo {halo} differ in length")
        self.shape, self.block_shape, self.halo = tuple(shape), tuple(block_shape), tuple(halo)
        self.grid_shape = tuple(math.ceil(length / block) for length, block in zip(shape, block_shape))

    def __len__(self) -> int:
        return math.prod(self.grid_shape)

    def __iter__(self) -> Iterator[Block]:
        return (self.block(number) for number in range(len(self)))

    def block(self, number: int) -> Block:
        position = tuple(int(index) for index in _unravel(number, self.grid_shape))
        core = tuple(slice(index * block, min((index + 1) * block, length))
                     for index, block, length in zip(position, self.block_shape, self.shape))
        outer = tuple(slice(max(0, region.start - halo), min(length, region.stop + halo))
                      for region, halo, length in zip(core, self.halo, self.shape))
        return Block(number, position, core, outer)

    @property
    def single(self) -> bool:
        """One block covers the whole array: blockwise is then the whole-array computation."""
        return len(self) == 1

    def faces(self, axes: tuple[int, ...] | None = None) -> Iterator[Face]:
        """Every face between neighbouring blocks (along ``axes``, default all), in block order."""
        axes = tuple(range(len(self.shape))) if axes is None else axes
        for lower in self:
            for axis in axes:
                if lower.position[axis] + 1 >= self.grid_shape[axis]:
                    continue
                position = list(lower.position)
                position[axis] += 1
                upper = self.block(_ravel(position, self.grid_shape))
                last, first = lower.core[axis].stop - 1, upper.core[axis].start
                lower_layer = tuple(slice(last, last + 1) if index == axis else region
                                    for index, region in enumerate(lower.core))
                upper_layer = tuple(slice(first, first + 1) if index == axis else region
                                    for index, region in enumerate(lower.core))
                yield Face(lower.number, upper.number, axis, lower_layer, upper_layer)

    def blocks_meeting(self, region: Region) -> Iterator[Block]:
        """The blocks whose cores meet ``region``."""
        ranges = [range(axis.start // block, (axis.stop - 1) // block + 1)
                  for axis, block in zip(region, self.block_shape)]
        for position in itertools.product(*ranges):
            yield self.block(_ravel(position, self.grid_shape))

    def numbers_in(self, first_axis_range: range) -> list[int]:
        """The blocks whose grid position along the first axis lies in ``first_axis_range``."""
        rest = [range(size) for size in self.grid_shape[1:]]
        return [_ravel((index, *others), self.grid_shape)
                for index in first_axis_range for others in itertools.product(*rest)]


def _unravel(number: int, grid_shape: tuple[int, ...]) -> tuple[int, ...]:
    position = []
    for size in reversed(grid_shape):
        number, index = divmod(number, size)
        position.append(index)
    return tuple(reversed(position))


def _ravel(position, grid_shape: tuple[int, ...]) -> int:
    number = 0
    for index, size in zip(position, grid_shape):
        number = number * size + index
    return number
