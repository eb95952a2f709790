"""Prediction: a trained U-Net over every slice (or the volume) of a dataset, overlap-tile, Zarr to Zarr.

Writes per-class probabilities as an OME-Zarr image (c, z, y, x) with named
channels, the data's voxel size and a resolution pyramid, float32 or quantised
to uint8 (probability x 255). Slices stream block by block (one output chunk at
a time) and tile by tile, reading only the input windows each block needs, so
memory does not grow with the slice or the stack; a 3-D network's volume
streams in blocks of slices with a halo of its margin.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import zarr

from .errors import InputError
from .inference import (
    TileGeometry,
)
from .intensity import NormalizedImage
from .mirror import ChannelsFirst
from .progress import progress
from .tiling import array_window_reader, axis_origins, predict_block, tiles_meeting

log = logging.getLogger(__name__)


def output_blocks(shape: tuple[int, int], chunks: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The (row0, row1, col0, col1) regions of the output chunks of one slice."""
    return [
        (row, min(row + chunks[0], shape[0]), col, min(col + chunks[1], shape[1]))
        for row in range(0, shape[0], chunks[0])
        for col in range(0, shape[1], chunks[1])
    ]


def quantise(probabilities: np.ndarray, dtype: str) -> np.ndarray:
    return np.round(probabilities * 255).astype(np.uint8) if dtype == "uint8" else probabilities


def predict_stack(image: NormalizedImage, target: zarr.Array, forward, *, geometry: TileGeometry,
                  batch_size: int, dtype: str, source: str = "the model", slices: range | None = None) -> None:
    """Predict the ``slices`` of ``image`` (default: all) into ``target`` (c, z, y, x) with a 2-D
    network, slice by slice, one output chunk at a time.

    The next slice is read and normalised, and finished blocks are compressed and
    written, on two helper threads while the network runs (both release the GIL),
    so the device does not wait for storage. Stops with :class:`InputError` at the
    first block whose output is not finite (``source`` names the model and data in
    the message); writes already started finish before the error leaves.
    """
    blocks = output_blocks(image.shape[1:], target.chunks[2:])
    whole_slices = tuple(image.raw.chunks[-2:]) == image.shape[1:]

    def load(z: int):
        # a slice stored as one chunk (up to 2048 px) is decoded once; larger ones window by window
        return ChannelsFirst(image[z]) if whole_slices else image.plane(z)

    slices = range(image.shape[0]) if slices is None else slices
    with ThreadPoolExecutor(1, thread_name_prefix="read") as reader, BlockWriter(target, dtype, source) as writer:
        next_plane = reader.submit(load, slices[0]) if slices else None
        for index, z in enumerate(progress(slices, desc="predicted slices")):
            plane = next_plane.result()
            next_plane = reader.submit(load, slices[index + 1]) if index + 1 < len(slices) else None
            read = array_window_reader(plane)
            for row0, row1, col0, col1 in blocks:
                probabilities = predict_block(forward, read, (row0, row1, col0, col1), image.shape[1:],
                                              tile=geometry.tile, margin=geometry.margin,
                                              num_classes=target.shape[0], batch_size=batch_size,
                                              blend=geometry.blend, align=geometry.align)
                writer.write((z, z + 1, row0, row1, col0, col1), probabilities[:, None])


def predict_volume(image: NormalizedImage, target: zarr.Array, forward, *, geometry: TileGeometry,
                   batch_size: int, dtype: str, source: str = "the model", slices: range | None = None) -> None:
    """Predict the ``slices`` of the volume ``image`` (default: all) into ``target`` (c, z, y, x)
    with a 3-D network, block by block.

    A block is a run of slices between two tile origins in z (each tile then runs
    once) by one output chunk in y/x. Its input, the tiles' windows grown by the
    margin (the halo) and mirrored at the volume's faces, is read from Zarr and
    normalised once, on a helper thread while the previous block runs; finished
    blocks are written on another. Errors as :func:`predict_stack`.
    """
    slices = range(image.shape[0]) if slices is None else slices
    z_blocks = volume_z_blocks(image.shape[0], geometry, slices)
    blocks = [(z0, z1, *plane) for z0, z1 in z_blocks for plane in output_blocks(image.shape[1:], target.chunks[2:])]

    def load(block: tuple[int, ...]):
        return halo_reader(image, block, geometry)

    with ThreadPoolExecutor(1, thread_name_prefix="read") as reader, BlockWriter(target, dtype, source) as writer:
        next_window = reader.submit(load, blocks[0]) if blocks else None
        for index, block in enumerate(progress(blocks, desc="predicted blocks")):
            read = next_window.result()
            next_window = reader.submit(load, blocks[index + 1]) if index + 1 < len(blocks) else None
            probabilities = predict_block(forward, read, block, image.shape, tile=geometry.tile, margin=geometry.margin,
                                          num_classes=target.shape[0], batch_size=batch_size, blend=geometry.blend,
                                          align=geometry.align)
            writer.write(block, probabilities)


def volume_z_blocks(depth: int, geometry: TileGeometry, slices: range) -> list[tuple[int, int]]:
    """The z ranges of a volume's blocks within ``slices``: cut at the tile origins in z (and at
    the ends of ``slices``), so that exact tiles run once each."""
    origins = axis_origins(depth, geometry.tile[0], geometry.align[0], geometry.blend)
    cuts = sorted({slices.start, slices.stop, *(origin for origin in origins if slices.start < origin < slices.stop)})
    return list(zip(cuts[:-1], cuts[1:]))


def halo_reader(image: NormalizedImage, block: tuple[int, ...], geometry: TileGeometry):
    """A window reader of the input one block's tiles need (their windows' bounding box, mirrored
    at the volume's faces), read from Zarr and normalised at once; windows are (c, z, y, x)."""
    low, high = [], []
    for axis, length in enumerate(image.shape):
        origins = tiles_meeting(block[2 * axis], block[2 * axis + 1],
                                axis_origins(length, geometry.tile[axis], geometry.align[axis], geometry.blend),
                                geometry.tile[axis], length, geometry.blend)
        low.append(min(origins) - geometry.margin[axis])
        high.append(max(origins) + geometry.tile[axis] + geometry.margin[axis])
    window = array_window_reader(image)(*zip(low, high))

    def read(*ranges: tuple[int, int]) -> np.ndarray:
        return window[(slice(None), *(slice(start - first, stop - first) for (start, stop), first in zip(ranges, low)))]

    return read


MAX_PENDING_WRITES = 2


class BlockWriter:
    """Writes predicted blocks into the output on a helper thread, at most ``MAX_PENDING_WRITES``
    behind; refuses (:class:`InputError`) a block that is not finite, naming ``source``."""

    def __init__(self, target: zarr.Array, dtype: str, source: str):
        self.target, self.dtype, self.source = target, dtype, source
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="write")
        self.pending: deque[Future] = deque()

    def write(self, block: tuple[int, ...], probabilities: np.ndarray) -> None:
        """``probabilities`` (K, z, y, x) of ``block`` = (z0, z1, row0, row1, col0, col1)."""
        if not np.isfinite(probabilities).all():
            z0, z1, row0, row1, col0, col1 = block
            where = f"slice {z0}" if z1 == z0 + 1 else f"slices {z0}-{z1 - 1}"
            raise InputError(
                f"predict: {self.source} gives non-finite probabilities (NaN or infinity) on {where}, "
                f"rows {row0}-{row1}, columns {col0}-{col1}; no predictions were written. If the input there is "
                "finite, the model overflows: predict with precision fp32, or retrain it"
            )
        self.pending.append(self.pool.submit(write_block, self.target, block, quantise(probabilities, self.dtype)))
        while len(self.pending) > MAX_PENDING_WRITES:  # bounded memory: wait for the oldest
            self.pending.popleft().result()

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, *exc) -> None:
        try:
            for write in self.pending:
                write.result()  # raise a write's error here
        finally:
            self.pool.shutdown()


def write_block(target: zarr.Array, block: tuple[int, ...], values: np.ndarray) -> None:
    z0, z1, row0, row1, col0, col1 = block
    target[:, z0:z1, row0:row1, col0:col1] = values
