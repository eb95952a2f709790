"""Segmentation of an image larger than memory, block by block, with one set of object IDs.

Three passes, each holding one block (with its halo) per worker:

1. :func:`segment_blocks`: every block's outer region (core + halo) is segmented by the
   configured method; its core's objects are written, numbered 1..n within the block, as
   *fragments* (:mod:`unetflow.fragments`), and so is its view of the first layer beyond
   each of its upper faces (in its halo), in its own fragment numbers.
2. :func:`stitch`: at each face between two blocks, one layer seen by both decides which
   fragments are one object (:mod:`unetflow.stitching`: components join where they touch,
   exactly; the watershed's fragments by majority overlap of the two views of the upper
   block's first layer); the fragment -> object lookup follows, with ``min_size`` applied
   to whole objects where the method asks for it.
3. :func:`write_objects`: every block's fragments are looked up into the output.

Invariant, against the whole image segmented in one piece (tested in
``tests/test_blockwise.py``):

- an image that is one block is segmented as in one piece, with the same numbers;
- ``components``: the same partition for any blocks and halo (exact stitching, ``min_size``
  on whole objects); numbers follow the blocks;
- ``watershed``: each block decides its core from its core plus ``halo`` voxels, so its
  interior voxels (foreground at or above the threshold) fall into the whole image's
  objects wherever the seeds and boundaries of the objects that reach the core lie within
  the halo (it covers the cells' diameter); an object that crosses block faces keeps one
  ID. Background far from the interior, which a watershed floods from whatever seeds it
  sees, may be given to other objects (or none, in a block without seeds). On the 3-D
  demo's predictions in 16^3 blocks the objects are the whole volume's, one to one, and
  voxels differ only where the watershed's priorities tie between two seeds (the order of
  equal priorities follows the window): flooded background, and the boundary inside
  interiors that touch under a low threshold (at most 1e-4 of the voxels, tested).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import zarr

from . import fragments as fragment_store
from . import io, ngff, parts
from .blocks import BlockGrid, Region, aligned_block_shape
from .errors import InputError
from .parallel import TaskProgress, dask_config
from .stitching import OUTSIDE, background_joins, face_pairs, majority_partners, object_numbers
from .voxel_size import from_config

log = logging.getLogger(__name__)

ReadWindow = Callable[[Region], np.ndarray]
CutFaces = tuple[tuple[bool, bool], ...]
# (window, its faces that cut the image, its region of the image) -> labels
SegmentWindow = Callable[[np.ndarray, CutFaces, Region], np.ndarray]


def volume_grid(shape: tuple[int, int, int], chunks: tuple[int, int, int], *, edge: int, halo: int,
                sampling: tuple[float, float, float]) -> BlockGrid:
    """Blocks of a volume: cubes of about ``edge`` voxels made of whole ``chunks``, and a halo of
    ``halo`` x voxels, i.e. ``halo / sampling`` voxels along each axis."""
    halos = tuple(math.ceil(halo / step) for step in sampling)
    return BlockGrid(shape, aligned_block_shape(shape, chunks, (edge,) * 3), halos)


def plane_grid(shape: tuple[int, int], chunks: tuple[int, int], *, edge: int, halo: int) -> BlockGrid:
    """Blocks of one slice: squares of about ``edge`` px made of whole ``chunks``, with a halo."""
    return BlockGrid(shape, aligned_block_shape(shape, chunks, (edge, edge)), (halo, halo))


@dataclass(frozen=True)
class Stitched:
    """Where each block's fragments start in the global numbering, and fragment -> object."""

    offsets: np.ndarray
    numbers: np.ndarray

    @property
    def objects(self) -> int:
        return int(self.numbers.max(initial=0))

    def lookup(self, block: int, fragments: np.ndarray) -> np.ndarray:
        """Object numbers (uint32) of one block's fragments."""
        return self.numbers[_global(fragments, self.offsets[block])].astype(np.uint32)


def _global(fragments: np.ndarray, offset: int) -> np.ndarray:
    """Global fragment numbers of a block's fragments (0 stays 0, OUTSIDE becomes stitching.OUTSIDE)."""
    numbers = np.where(fragments > 0, fragments.astype(np.int64) + offset, 0)
    numbers[fragments == fragment_store.OUTSIDE] = OUTSIDE
    return numbers


def segment_block(read: ReadWindow, segment_window: SegmentWindow, grid: BlockGrid, number: int,
                  store: zarr.Group, vote_threshold: float | None = None) -> np.ndarray:
    """Segment block ``number`` with its halo; write its core's fragments (1..n, in the order of the
    segmentation's own numbers) and its view of the layer beyond each upper face. Returns, per
    fragment (index 0: background), its voxels and its interior voxels (foreground at or above
    ``vote_threshold``; all voxels if None), shape (2, n + 1)."""
    block = grid.block(number)
    window = read(block.outer)
    cut_faces = tuple((region.start > 0, region.stop < length) for region, length in zip(block.outer, grid.shape))
    labels = segment_window(window, cut_faces, block.outer)
    interior = np.ones(window.shape, bool) if vote_threshold is None else window >= vote_threshold
    inner = block.core_in_outer
    present = np.unique(labels[inner])
    present = present[present > 0]
    fragment_of = np.full(int(labels.max(initial=0)) + 1, fragment_store.OUTSIDE, np.uint32)
    fragment_of[0] = 0
    fragment_of[present] = np.arange(1, len(present) + 1, dtype=np.uint32)
    core = fragment_of[labels[inner]]
    store[fragment_store.LABELS][block.core] = core
    for axis in range(len(grid.shape)):
        if inner[axis].stop < labels.shape[axis]:  # a halo beyond the upper face: the neighbour's first layer
            layer = _layer(inner, axis, inner[axis].stop)
            view = fragment_of[labels[layer]] | np.where(interior[layer], fragment_store.INTERIOR, np.uint32(0))
            store[fragment_store.beyond(axis)][_layer(block.core, axis, block.core[axis].stop)] = view
    voxels = np.bincount(core.ravel(), minlength=len(present) + 1)
    return np.stack([voxels, np.bincount(core[interior[inner]], minlength=len(present) + 1)])


def _layer(region: Region, axis: int, index: int) -> Region:
    return tuple(slice(index, index + 1) if number == axis else axis_region for number, axis_region in enumerate(region))


def segment_blocks(read: ReadWindow, segment_window: SegmentWindow, grid: BlockGrid, store: zarr.Group,
                   numbers: Sequence[int] | None = None, *, vote_threshold: float | None = None) -> dict[int, np.ndarray]:
    """Segment the blocks ``numbers`` (default: all) with Dask: block number -> its fragments'
    voxels and interior voxels (:func:`segment_block`)."""
    numbers = range(len(grid)) if numbers is None else numbers
    tasks = [dask.delayed(segment_block, pure=False)(read, segment_window, grid, number, store, vote_threshold,
                                                     dask_key_name=f"segment-block-{number}") for number in numbers]
    with TaskProgress(total=len(tasks), desc="segmented blocks", unit="blocks", prefix="segment-block"):
        return dict(zip(numbers, dask.compute(*tasks)))


def stitch(store: zarr.Group, grid: BlockGrid, sizes: dict[int, np.ndarray], rule: str, *,
           min_size: int = 0) -> Stitched:
    """Join fragments across the faces between blocks into objects (``rule`` and ``min_size``: see
    :func:`unetflow.methods.segmenters.block_settings`; ``sizes`` as :func:`segment_blocks` gives them)."""
    counts = np.array([sizes[number].shape[1] - 1 for number in range(len(grid))], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    labels = store[fragment_store.LABELS]

    def one_face(face) -> tuple[np.ndarray, np.ndarray]:
        upper = _global(labels[face.upper_layer], offsets[face.upper])
        if rule == "components" or grid.halo[face.axis] == 0:  # the touching layer: where components touch
            return face_pairs(_global(labels[face.lower_layer], offsets[face.lower]), upper, rule), np.zeros((0, 3))
        view = store[fragment_store.beyond(face.axis)][face.upper_layer]  # the same layer, seen from below
        lower = _global(view & ~fragment_store.INTERIOR, offsets[face.lower])
        voting = (view & fragment_store.INTERIOR) > 0
        return face_pairs(np.where(voting, lower, 0), upper, rule), majority_partners(lower, upper)

    faces = list(grid.faces())
    tasks = [dask.delayed(one_face, pure=False)(face, dask_key_name=f"stitch-face-{index}")
             for index, face in enumerate(faces)]
    with TaskProgress(total=len(tasks), desc="stitched faces", unit="faces", prefix="stitch-face"):
        results = dask.compute(*tasks)
    voxels, interior = (np.concatenate([[0], *(sizes[number][row, 1:] for number in range(len(grid)))])
                        for row in (0, 1))
    candidates = np.concatenate([rows.reshape(-1, 3) for _, rows in results] or [np.zeros((0, 3))])
    joins = [pairs for pairs, _ in results] + [background_joins(candidates, interior > 0)]
    joins = np.concatenate([pairs.reshape(-1, 2) for pairs in joins]).astype(np.int64)
    numbers = object_numbers(int(counts.sum()), joins, sizes=voxels, min_size=min_size)
    log.info("stitched %d fragments of %d blocks into %d objects (%d joins across %d faces)", counts.sum(), len(grid),
             numbers.max(initial=0), len(joins), len(faces))
    return Stitched(offsets, numbers)


def write_objects(store: zarr.Group, grid: BlockGrid, stitched: Stitched, target) -> None:
    """Every block's objects into ``target``, one task per chunk (or shard) of ``target``, so that
    no two tasks write one, whatever the blocks."""
    labels = store[fragment_store.LABELS]
    chunk_grid = BlockGrid(grid.shape, _write_unit_of(target, len(grid.shape)), (0,) * len(grid.shape))

    def one_chunk(number: int) -> None:
        region = chunk_grid.block(number).core
        objects = np.zeros(tuple(axis.stop - axis.start for axis in region), np.uint32)
        for block in grid.blocks_meeting(region):
            part = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(region, block.core))
            objects[tuple(slice(p.start - r.start, p.stop - r.start) for p, r in zip(part, region))] = \
                stitched.lookup(block.number, labels[part])
        target[region] = objects

    tasks = [dask.delayed(one_chunk, pure=False)(number, dask_key_name=f"write-chunk-{number}")
             for number in range(len(chunk_grid))]
    with TaskProgress(total=len(tasks), desc="written chunks", unit="chunks", prefix="write-chunk"):
        dask.compute(*tasks)


def _write_unit_of(target, dims: int) -> tuple[int, ...]:
    """The region one task writes of ``target`` (its chunks, or shards; a slice view's: its slices')."""
    return tuple(getattr(target, "shards", None) or target.chunks)[-dims:]


def segment_image(read: ReadWindow, segment_window: SegmentWindow, grid: BlockGrid, workspace: Path, target, *,
                  rule: str, min_size: int = 0, vote_threshold: float | None = None) -> int:
    """The three passes in one job, through a fragments store at ``workspace`` (removed after):
    ``target``'s objects; their count."""
    store = fragment_store.create(workspace, grid)
    try:
        sizes = segment_blocks(read, segment_window, grid, store, vote_threshold=vote_threshold)
        stitched = stitch(store, grid, sizes, rule, min_size=min_size)
        write_objects(store, grid, stitched, target)
    finally:
        fragment_store.remove(store)
    return stitched.objects


def merge_parts(output: Path, count: int, *, scheduler: str = "threads", workers: int = 1) -> None:
    """Stitch the fragments every part of a volume's segmentation wrote, and write ``output``'s
    store: the same store whatever the number of parts (neither the blocks nor the stitching
    depend on them)."""
    missing = [part for part in range(1, count + 1) if not parts.flag(output, part, count).exists()
               or not fragment_store.sizes_file(output, part, count).exists()]
    if missing:
        raise InputError(f"{output}: parts {missing} of {count} are not finished (no flag in "
                         f"{parts.workspace(output)}); rerun the workflow to redo them")
    store, plan = fragment_store.open_shared(output)
    grid, sizes = plan.grid, fragment_store.load_sizes(output, count)
    if len(sizes) != len(grid):
        raise InputError(f"{output}: the parts segmented {len(sizes)} of {len(grid)} blocks; rerun the workflow")
    with dask_config(scheduler, workers):
        stitched = stitch(store, grid, sizes, plan.rule, min_size=plan.min_size)
    with io.atomic_store(output) as temporary, dask_config(scheduler, workers):  # its tasks end before it goes
        segmentation = ngff.create_segmentation(temporary, plan.shape, from_config(plan.voxel_size, "voxel_size"),
                                                plan.attributes, volume=True, zarr_format=plan.zarr_format)
        write_objects(store, grid, stitched, io.level0_to_write(segmentation))
        ngff.write_pyramid(segmentation)
    parts.discard_workspace(output)
    log.info("%s: %d objects in the volume (%s, 3-D, %d blocks, %d parts)", output, stitched.objects,
             plan.attributes.get("method"), len(grid), count)
