"""The fragments store of a blockwise segmentation: every block's objects, numbered within the block.

A Zarr v3 group (one shard per block, so each block is the one writer of its shards)::

    labels        uint32, the image's shape: each block's core, fragments 1..n of that block
    beyond-<a>    uint32, the same shape, written only on the first layer of each block along
                  axis a: the fragments of its lower neighbour as that neighbour segmented the
                  layer (the first layer of its halo): its fragment number, OUTSIDE where its
                  label there is none of its core's fragments, 0 for none; plus INTERIOR where
                  the voxel is interior (it votes). The two views of one layer stitch the
                  blocks (unetflow.blockwise, unetflow.stitching).

A volume segmented in parts shares one such store in its parts workspace
(:func:`shared`), beside each part's fragment sizes (:func:`save_sizes`).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zarr

from . import io, parts
from .blocks import BlockGrid

CHUNK_VOXELS = 2**15  # inner chunks of a shard (32^3, 256^2): one layer reads little beyond itself
LABELS = "labels"
INTERIOR = np.uint32(2**31)  # the flag of an interior voxel in a beyond layer
OUTSIDE = np.uint32(2**31 - 1)  # stitching.OUTSIDE as stored: a label that is none of the block's fragments


def beyond(axis: int) -> str:
    return f"beyond-{axis}"


def create(path: Path, grid: BlockGrid, attributes: dict | None = None) -> zarr.Group:
    """An empty fragments store for ``grid`` at ``path``."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    inner_edge = 2 ** round(math.log2(CHUNK_VOXELS) / len(grid.shape))
    inner = tuple(min(edge, inner_edge) for edge in grid.block_shape)
    shards = tuple(math.ceil(edge / chunk) * chunk for edge, chunk in zip(grid.block_shape, inner))
    for name in (LABELS, *(beyond(axis) for axis in range(len(grid.shape)))):
        group.create_array(name, shape=grid.shape, dtype=np.uint32, shards=shards, chunks=inner, fill_value=0)
    if attributes:
        group.attrs.update(attributes)
    return group


def remove(group: zarr.Group) -> None:
    shutil.rmtree(io.location(group), ignore_errors=True)


@dataclass(frozen=True)
class VolumePlan:
    """What the parts of a volume's blockwise segmentation share (the store's signature): the
    grid, the stitching, and what the final store is made with."""

    shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    halo: tuple[int, ...]
    rule: str
    min_size: int
    voxel_size: dict
    attributes: dict
    source: str
    zarr_format: int  # of the segmentation store written from them (its predictions')

    @property
    def grid(self) -> BlockGrid:
        return BlockGrid(self.shape, self.block_shape, self.halo)

    @classmethod
    def from_signature(cls, values: dict) -> VolumePlan:
        return cls(**{**values, **{key: tuple(values[key]) for key in ("shape", "block_shape", "halo")}})


BLOCKWISE = "blockwise"  # attribute marking a parts workspace's store as a fragments store


def shared(output: Path, plan: VolumePlan) -> zarr.Group:
    """The fragments store the parts of ``output``'s segmentation fill, in its parts workspace
    (created by the first part; one left by other settings is replaced, :func:`parts.shared_store`)."""
    return parts.shared_store(output, asdict(plan), lambda path: create(path, plan.grid, {BLOCKWISE: True}))


def is_shared(output: Path) -> bool:
    """Whether ``output``'s parts workspace holds a volume's fragments store."""
    store = parts.workspace(output) / "store"
    return store.is_dir() and bool(zarr.open_group(str(store), mode="r").attrs.get(BLOCKWISE, False))


def open_shared(output: Path) -> tuple[zarr.Group, VolumePlan]:
    group = zarr.open_group(str(parts.workspace(output) / "store"), mode="r")
    return group, VolumePlan.from_signature(dict(group.attrs[parts.SIGNATURE]))


def sizes_file(output: Path, part: int, count: int) -> Path:
    return parts.workspace(output) / f"sizes-{part}-of-{count}.npz"


def save_sizes(output: Path, part: int, count: int, sizes: dict[int, np.ndarray]) -> None:
    """Part ``part``'s blocks' fragment voxels, beside its flag (written whole, then renamed)."""
    path = sizes_file(output, part, count)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        np.savez(handle, **{str(number): values for number, values in sizes.items()})
    os.replace(temporary, path)


def load_sizes(output: Path, count: int) -> dict[int, np.ndarray]:
    sizes: dict[int, np.ndarray] = {}
    for part in range(1, count + 1):
        with np.load(sizes_file(output, part, count)) as saved:
            sizes.update({int(number): saved[number] for number in saved.files})
    return sizes
